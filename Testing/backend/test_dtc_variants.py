"""DTC Table 2's ablation settings (Seg / LSF / Seg+LSF / Seg+LSF+DTC) change the loss and the label as claimed.

Real torch, tiny tensors; the inference check uses a real saved model package.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.levelset import heaviside
from MultiModalSegLib.losses import DTC_VARIANTS, DTCLoss, DTCLossConfig, segmentation_output_of
from MultiModalSegLib.training.config import DTCSettings, TrainingConfig


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    seg_logits = torch.randn(2, 1, 8, 8, 8, generator=generator, requires_grad=True)
    level_set = torch.tanh(torch.randn(2, 1, 8, 8, 8, generator=generator)).requires_grad_(True)
    labels = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    labels[:, 2:6, 2:6, 2:6] = 1
    return seg_logits, level_set, labels


def _loss(variant: str, **kwargs):
    seg_logits, level_set, labels = _batch()
    config = DTCLossConfig(variant=variant, consistency_rampup_iterations=10, consistency_rampup_step=1, **kwargs)
    terms = DTCLoss(config)(seg_logits, level_set, labels, labeled_batch_size=1, iteration=10)
    terms["total"].backward()
    return terms, seg_logits.grad, level_set.grad


def test_full_dtc_is_the_default_and_adds_every_term():
    assert DTCLossConfig().variant == "seg+lsf+dtc" and DTCSettings().variant == "seg+lsf+dtc"
    terms, seg_grad, lsf_grad = _loss("seg+lsf+dtc")
    expected = terms["dice"] + 0.3 * terms["sdf_mse"] + terms["consistency_weight"] * terms["consistency"]
    assert float(terms["consistency_weight"]) == pytest.approx(1.0)
    assert float(terms["total"]) == pytest.approx(float(expected), rel=1e-6)
    # the consistency reaches the unlabeled second sample through both heads
    assert seg_grad[1].abs().sum() > 0 and lsf_grad[1].abs().sum() > 0


def test_seg_only_is_the_dice_of_the_segmentation_head():
    terms, seg_grad, lsf_grad = _loss("seg")
    assert float(terms["total"]) == pytest.approx(float(terms["dice"]))
    assert float(terms["consistency_weight"]) == 0.0
    assert lsf_grad is None or lsf_grad.abs().sum() == 0  # the level-set head learns nothing
    assert seg_grad[1].abs().sum() == 0  # unlabeled rows contribute nothing without consistency


def test_seg_plus_lsf_drops_only_the_consistency():
    terms, seg_grad, lsf_grad = _loss("seg+lsf")
    assert float(terms["total"]) == pytest.approx(float(terms["dice"] + 0.3 * terms["sdf_mse"]), rel=1e-6)
    assert float(terms["sdf_mse"]) > 0 and float(terms["consistency_weight"]) == 0.0
    assert seg_grad[1].abs().sum() == 0 and lsf_grad[1].abs().sum() == 0
    assert lsf_grad[0].abs().sum() > 0


def test_lsf_reads_the_segmentation_from_the_level_set():
    terms, seg_grad, _ = _loss("lsf")
    _, level_set, labels = _batch()
    from MultiModalSegLib.losses.dice import squared_dice_loss

    target = (labels[:1] == 1).float()
    expected_dice = squared_dice_loss(heaviside(level_set[:1, 0].detach(), 1500.0), target, 1e-5)
    assert float(terms["dice"]) == pytest.approx(float(expected_dice), rel=1e-5)
    assert float(terms["total"]) == pytest.approx(float(terms["dice"] + 0.3 * terms["sdf_mse"]), rel=1e-6)
    assert seg_grad is None or seg_grad.abs().sum() == 0  # the segmentation head is not trained
    assert segmentation_output_of("lsf") == "level_set"
    assert {segmentation_output_of(v) for v in DTC_VARIANTS if v != "lsf"} == {"segmentation"}


def test_unknown_variants_are_refused_with_the_choices():
    with pytest.raises(MultiModalSegError, match="seg\\+lsf\\+dtc"):
        DTCLoss(DTCLossConfig(variant="dtc-only"))
    config = TrainingConfig.for_method("dtc")
    config.dtc.variant = "both"
    with pytest.raises(MultiModalSegError, match="Unknown DTC variant"):
        config.validate()
    config.dtc.variant = "LSF"
    config.validate()
    assert config.dtc.segmentation_output == "level_set"
    assert TrainingConfig.from_dict(config.to_dict()).dtc.variant == "LSF"


def test_a_level_set_package_takes_its_label_from_the_level_set(tiny_dtc_package):
    import SimpleITK as sitk

    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.weights import load_model_package

    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.normal(size=(16, 16, 16)).astype(np.float32))
    plain = predict(tiny_dtc_package, {"mri": image}, device="cpu")
    np.testing.assert_array_equal(plain.labelmap, (plain.probabilities["atrium"] > 0.5).astype(np.uint8))

    manifest_path = tiny_dtc_package.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["segmentation_output"] = "level_set"
    manifest_path.write_text(json.dumps(manifest))
    from_level_set = predict(load_model_package(tiny_dtc_package.folder), {"mri": image}, device="cpu")
    level_set = from_level_set.level_set["atrium"].astype(np.float32)
    np.testing.assert_array_equal(from_level_set.labelmap, (level_set < 0).astype(np.uint8))
    # the untrained tiny network's two heads disagree, so the setting changes the label map
    assert not np.array_equal(from_level_set.labelmap, plain.labelmap)

    manifest["segmentation_output"] = "both"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MultiModalSegError, match="segmentation_output"):
        predict(load_model_package(tiny_dtc_package.folder), {"mri": image}, device="cpu")


def test_mmseg_train_takes_the_variant(tmp_path):
    from MultiModalSegLib.cli import main

    folder = tmp_path / "lsf"
    code = main(["train", "--method", "dtc", "--dtc-variant", "lsf", "--data", "phantom:atrium-mr:2:0?shape=16x32x32",
                 "--output", str(folder), "--iterations", "1", "--patch", "16x32x32", "--batch", "2",
                 "--validation-cases", "0", "--base-filters", "2", "--device", "cpu"])
    assert code == 0
    manifest = json.loads((folder / "last" / "manifest.json").read_text())
    assert manifest["segmentation_output"] == "level_set"
    assert manifest["provenance"]["config"]["dtc"]["variant"] == "lsf"
    with pytest.raises(SystemExit):
        main(["train", "--method", "dtc", "--dtc-variant", "none", "--data", "x", "--output", str(tmp_path / "x")])


@pytest.mark.slow
def test_lsf_training_validates_the_label_its_package_will_predict(tmp_path):
    """The validation curve of the LSF row reads the level set (its segmentation head is never trained)."""
    from MultiModalSegLib.cli import main
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.evaluation import evaluate_model

    data = "phantom:atrium-mr:3:0?shape=16x32x32"
    folder = tmp_path / "lsf"
    code = main(["train", "--method", "dtc", "--dtc-variant", "lsf", "--data", data, "--output", str(folder),
                 "--iterations", "2", "--patch", "16x32x32", "--batch", "2", "--validation-cases", "1",
                 "--validate-every", "2", "--base-filters", "2", "--device", "cpu"])
    assert code == 0
    recorded = json.loads((folder / "result.json").read_text())["validation"][-1]["dice_per_class"]["left_atrium"]
    validation_case = load_cases(data)[-1:]  # split_cases holds out the last labeled case
    evaluated = evaluate_model(folder / "last", validation_case, device="cpu", bootstrap=10).mean("left_atrium")
    assert recorded == pytest.approx(evaluated, abs=1e-6)
