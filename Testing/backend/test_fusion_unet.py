"""The U-Net baselines of MAML's tables (models/fusion_unet.py) and MAML without mutual learning (MS+MA).

Real torch, tiny sizes (width 4, 16x32x32 phantoms): each test takes seconds on a 2-core CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training_support import LIVER, PATCH, SHAPE, tiny_config
from tiny_packages import LIVER_LABELS

from MultiModalSegLib.errors import MultiModalSegError

STRIDES = [[1, 2, 2], [2, 2, 2]]


def tiny_unet(modalities=("arterial", "venous"), deep_supervision=True, seed=0, strides=STRIDES):
    from MultiModalSegLib.models import build_model

    torch.manual_seed(seed)
    return build_model({"name": "FusionUNet", "config": {
        "modalities": list(modalities), "num_classes": 3, "base_filters": 4, "max_filters": 8,
        "strides": strides, "deep_supervision": deep_supervision}})


def unet_manifest(modalities=("arterial", "venous"), model_id="tiny-unet"):
    return {
        "id": model_id, "version": 1, "method": "unet", "title": "tiny untrained U-Net for tests",
        "modalities": [{"name": name, "patterns": [f"*{name[:3]}*"], "normalization": "ct"} for name in modalities],
        "reference_modality": "venous" if "venous" in modalities else modalities[0],
        "labels": LIVER_LABELS, "preprocessing": {}, "patch_size": [8, 16, 16],
        "supports_missing_modalities": False, "provenance": {"data": "none (random weights for tests)"},
    }


def test_early_fusion_forward_shapes_and_deep_outputs():
    network = tiny_unet()
    x = torch.randn(2, 2, 8, 32, 32)
    network.train()
    out = network(x)
    assert out["joint"].shape == (2, 3, 8, 32, 32)
    assert out["branches"] == {} and out["attention"] == {}
    # two downsamplings -> one deep output at half in-plane resolution (the lowest stage has no head)
    assert [tuple(t.shape) for t in out["joint_deep"]] == [(2, 3, 8, 16, 16)]
    network.eval()
    with torch.no_grad():
        assert set(network(x)) == {"joint", "branches", "attention"}
    assert network.input_divisor == (2, 4, 4)


def test_single_modality_unet_is_one_maml_branch():
    from MultiModalSegLib.models import MAML

    single = tiny_unet(("venous",))
    maml = MAML(["arterial", "venous"], 3, base_filters=4, max_filters=8, strides=STRIDES)
    branch_shapes = [tuple(p.shape) for p in maml.branches[1].parameters()]
    assert [tuple(p.shape) for p in single.unet.parameters()] == branch_shapes
    # the early-fusion U-Net differs only in its first convolution's input channels
    fused = tiny_unet()
    first = next(fused.unet.parameters())
    assert first.shape[1] == 2 and next(single.unet.parameters()).shape[1] == 1


def test_architecture_round_trip_and_refusals():
    from MultiModalSegLib.models import build_model

    network = tiny_unet()
    rebuilt = build_model(json.loads(json.dumps(network.architecture)))
    assert rebuilt.architecture == network.architecture
    with pytest.raises(MultiModalSegError, match="without arterial"):
        network(torch.zeros(1, 2, 8, 32, 32), available=["venous"])
    with pytest.raises(MultiModalSegError, match=r"2 modalities"):
        network(torch.zeros(1, 1, 8, 32, 32))
    with pytest.raises(MultiModalSegError, match="not a multiple"):
        network(torch.zeros(1, 2, 8, 30, 32))
    with pytest.raises(MultiModalSegError, match="The U-Net"):
        build_model({"name": "FusionUNet", "config": {"modalities": ["a", "a"], "num_classes": 3}})


def test_maml_loss_trains_the_unet_with_deep_supervision():
    from MultiModalSegLib.losses import MAMLLoss
    from MultiModalSegLib.losses.dice import DiceCELoss

    # three downsamplings: full resolution + 2 deep outputs, nnU-Net weights [4/7, 2/7, 1/7] -> [2/3, 1/3, 0]
    network = tiny_unet(strides=[[1, 2, 2], [2, 2, 2], [2, 2, 2]])
    network.train()
    x = torch.randn(2, 2, 8, 32, 32)
    target = torch.randint(0, 3, (2, 8, 32, 32))
    out = network(x)
    assert len(out["joint_deep"]) == 2
    terms = MAMLLoss(lambda_intra=0.0)(out, target)
    assert set(terms) == {"joint", "total"}
    loss = DiceCELoss()
    half = torch.nn.functional.interpolate(target[:, None].float(), size=out["joint_deep"][0].shape[2:],
                                           mode="nearest-exact")[:, 0].long()
    expected = 2 / 3 * loss(out["joint"], target) + 1 / 3 * loss(out["joint_deep"][0], half)
    assert float(terms["total"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    terms["total"].backward()
    heads = network.unet.segmentation_heads  # lowest-resolution first; its weight is 0, as in nnU-Net
    assert heads[0].weight.grad is None
    assert heads[1].weight.grad is not None and heads[2].weight.grad is not None
    assert all(p.grad is not None for p in network.unet.encoder.parameters())


def test_package_round_trip_and_predict_on_a_phantom(tmp_path):
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.weights import load_model_package, save_model_package

    network = tiny_unet(deep_supervision=False, seed=3)
    save_model_package(network, unet_manifest(), tmp_path / "unet")
    package = load_model_package(tmp_path / "unet")
    assert package.method == "unet" and not package.supports_missing_modalities
    loaded = package.build_network("cpu")
    for name, value in network.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name])

    case = load_cases(f"phantom:liver-ct2:1:5?shape={SHAPE}")[0]
    result = predict(package, dict(case.images), device="cpu")
    assert result.labelmap.shape == tuple(reversed(case.images["venous"].GetSize()))
    assert set(np.unique(result.labelmap)) <= {0, 1, 2}
    assert set(result.probabilities) == {"liver", "tumor"}
    assert result.attention == {}
    assert 0.0 <= float(result.uncertainty.min()) and float(result.uncertainty.max()) <= 1.0 + 1e-3
    with pytest.raises(MultiModalSegError, match="needs every modality"):
        predict(package, {"venous": case.images["venous"]}, device="cpu")


def test_single_phase_package_predicts_from_its_phase_alone(tmp_path):
    from MultiModalSegLib.datasets import load_cases
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.weights import save_model_package

    package = save_model_package(tiny_unet(("arterial",), deep_supervision=False), unet_manifest(("arterial",)),
                                 tmp_path / "art")
    case = load_cases(f"phantom:liver-ct2:1:5?shape={SHAPE}")[0]
    result = predict(package, {"arterial": case.images["arterial"]}, device="cpu")
    assert result.available == ["arterial"]
    background = 1.0 - sum(p.astype(np.float64) for p in result.probabilities.values())
    assert float(background.min()) >= -1e-3


def test_train_unet_from_the_cli_then_evaluate(tmp_path, capsys):
    from MultiModalSegLib.cli import main
    from MultiModalSegLib.weights import load_model_package

    architecture = json.dumps({"max_filters": 16, "strides": [[2, 2, 2], [2, 2, 2]], "ma_kernel": "reference"})
    code = main(["train", "--method", "unet", "--modalities", "venous", "--data", LIVER, "--output",
                 str(tmp_path / "run"), "--iterations", "2", "--patch", "x".join(map(str, PATCH)), "--batch", "2",
                 "--base-filters", "4", "--architecture", architecture, "--validation-cases", "0",
                 "--checkpoint-every", "2", "--device", "cpu", "--seed", "3"])
    assert code == 0, capsys.readouterr().out
    package = load_model_package(tmp_path / "run" / "last")
    assert package.method == "unet" and package.modalities == ["venous"]
    assert package.manifest["architecture"]["name"] == "FusionUNet"
    assert package.manifest["architecture"]["config"]["modalities"] == ["venous"]
    capsys.readouterr()
    code = main(["evaluate", "--model", str(tmp_path / "run" / "last"), "--data", LIVER.replace(":3:0", ":1:9"),
                 "--output", str(tmp_path / "eval"), "--device", "cpu", "--bootstrap", "50"])
    assert code == 0, capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["available"] == ["venous"] and summary["n_cases"] == 1


def test_unet_training_step_and_the_lambda_option(tmp_path, capsys):
    from MultiModalSegLib.cli import main
    from MultiModalSegLib.training.setup import build_step, network_architecture

    config = tiny_config("unet")
    architecture = network_architecture(config, ["arterial", "venous"], 2)
    assert architecture["name"] == "FusionUNet" and architecture["config"]["num_classes"] == 3
    step = build_step(config)
    network = tiny_unet()
    network.train()
    batch = {"image": torch.randn(2, 2, 8, 32, 32), "label": torch.randint(0, 3, (2, 8, 32, 32))}
    result = step(network, batch, 0)
    assert torch.isfinite(result.loss) and result.loss.requires_grad

    maml = tiny_config("maml")
    maml.maml.lambda_intra = 0.0
    assert build_step(maml).loss.lambda_intra == 0.0
    code = main(["train", "--method", "unet", "--lambda-intra", "0", "--data", LIVER, "--output",
                 str(tmp_path / "x"), "--iterations", "1"])
    assert code == 2
    assert "--method maml only" in capsys.readouterr().out
