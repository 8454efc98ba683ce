"""Losses: Dice (nnU-Net and DTC forms), MAML's weighted total, DTC's terms, the ramp-up."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import find_boundaries

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.losses import (
    DiceCELoss,
    DTCLoss,
    DTCLossConfig,
    MAMLLoss,
    SoftDiceLoss,
    nnunet_deep_supervision_weights,
    sigmoid_rampup,
    squared_dice_loss,
)


def random_labels(generator: torch.Generator, shape: tuple[int, ...], classes: int) -> torch.Tensor:
    return torch.randint(0, classes, shape, generator=generator)


# ---------------------------------------------------------------- Dice


def test_soft_dice_is_zero_for_a_perfect_prediction():
    labels = random_labels(torch.Generator().manual_seed(0), (2, 6, 7, 5), 3)
    logits = 50.0 * F.one_hot(labels, 3).movedim(-1, 1).float()
    for batch_dice in (True, False):
        loss = SoftDiceLoss(batch_dice=batch_dice)(logits, labels)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert DiceCELoss()(logits, labels).item() == pytest.approx(0.0, abs=1e-6)
    probabilities = F.one_hot(labels, 3).movedim(-1, 1).float()
    assert squared_dice_loss(probabilities[:, 1], labels == 1).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_hand_computed():
    # one sample, two classes, four voxels; probabilities given directly
    foreground = torch.tensor([1.0, 0.5, 0.25, 0.0])
    probabilities = torch.stack([1 - foreground, foreground]).view(1, 2, 4)
    target = torch.tensor([[1, 1, 0, 0]])
    # foreground: TP = 1.5, FP = 0.25, FN = 0.5 -> dice = 3 / 3.75 = 0.8
    loss = SoftDiceLoss(smooth=0.0, nonlinearity="none")(probabilities, target)
    assert loss.item() == pytest.approx(0.2, abs=1e-6)
    # with background: background TP = 1.75, FP = 0.5, FN = 0.25 -> dice = 3.5 / 4.25
    with_background = SoftDiceLoss(smooth=0.0, include_background=True, nonlinearity="none")
    assert with_background(probabilities, target).item() == pytest.approx(1 - (0.8 + 3.5 / 4.25) / 2, abs=1e-6)
    # DTC's V-Net form: 1 - 2 * 1.5 / (sum p^2 + sum t^2) = 1 - 3 / (1.3125 + 2)
    assert squared_dice_loss(foreground, target[0], smooth=0.0).item() == pytest.approx(1 - 3 / 3.3125, abs=1e-6)


def test_batch_dice_pools_the_batch_and_sample_dice_averages():
    probabilities = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    probabilities = torch.stack([1 - probabilities, probabilities], dim=1)  # [2, 2, 4]
    target = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    batch = SoftDiceLoss(batch_dice=True, smooth=0.0, nonlinearity="none")(probabilities, target)
    per_sample = SoftDiceLoss(batch_dice=False, smooth=0.0, nonlinearity="none")(probabilities, target)
    assert batch.item() == pytest.approx(1 - 4 / 6, abs=1e-6)  # TP 2, FP 1, FN 1
    assert per_sample.item() == pytest.approx(1 - (1.0 + 0.0) / 2, abs=1e-6)


def test_one_hot_and_index_targets_agree_and_dice_ce_adds_cross_entropy():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 5, 6, 7, generator=generator)
    labels = random_labels(generator, (2, 5, 6, 7), 4)
    encoded = F.one_hot(labels, 4).movedim(-1, 1).float()
    dice = SoftDiceLoss()
    torch.testing.assert_close(dice(logits, labels), dice(logits, encoded))
    torch.testing.assert_close(dice(logits, labels), dice(logits, labels[:, None]))
    combined = DiceCELoss(weight_dice=0.7, weight_ce=1.3)(logits, labels)
    expected = 1.3 * F.cross_entropy(logits, labels) + 0.7 * dice(logits, labels)
    torch.testing.assert_close(combined, expected)
    torch.testing.assert_close(DiceCELoss()(logits, encoded), DiceCELoss()(logits, labels))


# ---------------------------------------------------------------- MAML


def test_nnunet_deep_supervision_weights():
    assert nnunet_deep_supervision_weights(1) == [1.0]
    three = nnunet_deep_supervision_weights(3)
    assert three == pytest.approx([2 / 3, 1 / 3, 0.0])
    five = nnunet_deep_supervision_weights(5)
    assert sum(five) == pytest.approx(1.0) and five[-1] == 0.0
    assert [five[i] / five[i + 1] for i in range(3)] == pytest.approx([2.0, 2.0, 2.0])


def maml_outputs(generator: torch.Generator, batch: int, classes: int, size: int, levels: int):
    def logits(scale: int) -> torch.Tensor:
        side = size // scale
        return torch.randn(batch, classes, side, side, side, generator=generator, requires_grad=True)

    outputs = {
        "joint": logits(1),
        "branches": {"arterial": logits(1), "venous": logits(1)},
        "attention": {"arterial": torch.rand(batch, 4, size, size, size)},
    }
    if levels > 1:
        outputs["branches_deep"] = {
            name: [logits(2**level) for level in range(1, levels)] for name in ("arterial", "venous")
        }
    return outputs


def test_maml_loss_without_deep_supervision_is_joint_plus_lambda_times_branches():
    generator = torch.Generator().manual_seed(4)
    outputs = maml_outputs(generator, 2, 3, 8, levels=1)
    target = random_labels(generator, (2, 8, 8, 8), 3)
    dice_ce = DiceCELoss()
    joint = dice_ce(outputs["joint"], target)
    arterial = dice_ce(outputs["branches"]["arterial"], target)
    venous = dice_ce(outputs["branches"]["venous"], target)
    for lambda_intra in (0.5, 2.0):
        terms = MAMLLoss(lambda_intra=lambda_intra)(outputs, target[:, None])
        torch.testing.assert_close(terms["joint"], joint)
        torch.testing.assert_close(terms["intra/arterial"], arterial)
        torch.testing.assert_close(terms["intra/venous"], venous)
        torch.testing.assert_close(terms["total"], joint + lambda_intra * (arterial + venous))
    terms["total"].backward()
    assert outputs["joint"].grad is not None and outputs["branches"]["venous"].grad is not None


def test_maml_loss_with_deep_supervision_weights_levels_and_downsamples_targets():
    generator = torch.Generator().manual_seed(5)
    outputs = maml_outputs(generator, 2, 3, 16, levels=4)
    target = random_labels(generator, (2, 16, 16, 16), 3)
    weights = nnunet_deep_supervision_weights(4)
    dice_ce = DiceCELoss()
    # centre-aligned nearest downsampling by a factor f keeps index floor((o + 0.5) * f) = f * o + f // 2
    expected_intra = {}
    for name in ("arterial", "venous"):
        levels = [outputs["branches"][name], *outputs["branches_deep"][name]]
        total = torch.zeros(())
        for level, (weight, logits) in enumerate(zip(weights, levels)):
            factor = 2**level
            start = factor // 2 if factor > 1 else 0
            level_target = target[:, start::factor, start::factor, start::factor]
            assert level_target.shape[1:] == logits.shape[2:]
            total = total + weight * dice_ce(logits, level_target)
        expected_intra[name] = total
    terms = MAMLLoss(lambda_intra=0.25)(outputs, target)
    joint = dice_ce(outputs["joint"], target)  # no joint_deep: the joint head has one output, weight 1
    torch.testing.assert_close(terms["joint"], joint)
    for name, value in expected_intra.items():
        torch.testing.assert_close(terms[f"intra/{name}"], value)
    # the reference's weighting (YaoZhang93/MAML MAMLTrainerV2): the joint head counts with the
    # branches' full-resolution weight w_0 = 1 / (1 + 1/2 + 1/4) = 4/7 for 4 outputs, worked by hand
    torch.testing.assert_close(terms["total"], (4.0 / 7.0) * joint + 0.25 * sum(expected_intra.values()))
    summed = MAMLLoss(lambda_intra=0.25, joint_weight=1.0)(outputs, target)
    torch.testing.assert_close(summed["total"], joint + 0.25 * sum(expected_intra.values()))
    # the lowest level has weight 0: changing its logits changes nothing
    outputs["branches_deep"]["venous"][-1] = outputs["branches_deep"]["venous"][-1] * 0 + 7.0
    torch.testing.assert_close(MAMLLoss(lambda_intra=0.25)(outputs, target)["total"], terms["total"])


def test_ms_ma_setting_keeps_the_branches_deep_supervision_and_drops_their_own_prediction():
    """MAML Table 1's MS+MA row: lambda_intra 0, lambda_deep 1 (lambda_intra 0 alone left it no deep supervision)."""
    generator = torch.Generator().manual_seed(9)
    outputs = maml_outputs(generator, 2, 3, 16, levels=4)
    target = random_labels(generator, (2, 16, 16, 16), 3)
    weights = nnunet_deep_supervision_weights(4)  # 4/7, 2/7, 1/7, 0
    dice_ce = DiceCELoss()
    joint = dice_ce(outputs["joint"], target)
    full, deep = {}, {}
    for name in ("arterial", "venous"):
        full[name] = weights[0] * dice_ce(outputs["branches"][name], target)
        deep[name] = sum(weights[level] * dice_ce(logits, target[:, 2**level // 2::2**level, 2**level // 2::2**level,
                                                                  2**level // 2::2**level])
                         for level, logits in enumerate(outputs["branches_deep"][name], start=1))
    ms_ma = MAMLLoss(lambda_intra=0.0, lambda_deep=1.0)(outputs, target)
    torch.testing.assert_close(ms_ma["total"], (4.0 / 7.0) * joint + deep["arterial"] + deep["venous"])
    for name in ("arterial", "venous"):  # the logged branch loss is still the whole deep-supervised one
        torch.testing.assert_close(ms_ma[f"intra/{name}"], full[name] + deep[name])
    # lambda_deep None is the reference's single loss list: unchanged
    reference = MAMLLoss(lambda_intra=0.5)(outputs, target)
    torch.testing.assert_close(reference["total"],
                               (4.0 / 7.0) * joint + 0.5 * sum(full.values()) + 0.5 * sum(deep.values()))
    without = MAMLLoss(lambda_intra=0.0)(outputs, target)
    torch.testing.assert_close(without["total"], (4.0 / 7.0) * joint)
    # gradients: MS+MA reaches the branches' deep heads but not their full-resolution heads
    ms_ma["total"].backward()
    assert outputs["branches_deep"]["venous"][0].grad.abs().sum() > 0
    assert outputs["branches"]["venous"].grad is None or outputs["branches"]["venous"].grad.abs().sum() == 0
    with pytest.raises(ValueError, match=">= 0"):
        MAMLLoss(lambda_deep=-1.0)


def test_maml_loss_accepts_joint_deep_list_form_and_explicit_weights():
    generator = torch.Generator().manual_seed(6)
    outputs = maml_outputs(generator, 1, 2, 8, levels=2)
    outputs["joint_deep"] = [torch.randn(1, 2, 4, 4, 4, generator=generator)]
    target = random_labels(generator, (1, 8, 8, 8), 2)
    as_dict = MAMLLoss(deep_supervision_weights=[0.6, 0.4])(outputs, target)
    listed = dict(outputs)
    listed["branches_deep"] = [{name: deep[0] for name, deep in outputs["branches_deep"].items()}]
    as_list = MAMLLoss(deep_supervision_weights=[0.6, 0.4])(listed, target)
    torch.testing.assert_close(as_dict["total"], as_list["total"])
    low_target = target[:, 1::2, 1::2, 1::2]
    expected_joint = 0.6 * DiceCELoss()(outputs["joint"], target) + 0.4 * DiceCELoss()(
        outputs["joint_deep"][0], low_target
    )
    torch.testing.assert_close(as_dict["joint"], expected_joint)
    with pytest.raises(ValueError, match="deep_supervision_weights"):
        MAMLLoss(deep_supervision_weights=[1.0, 0.5, 0.25])(outputs, target)


# ---------------------------------------------------------------- DTC


def reference_sdf(mask: np.ndarray) -> np.ndarray:
    """DTC compute_sdf for one non-empty mask (scipy + skimage)."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    sdf = (outside - outside.min()) / (outside.max() - outside.min()) - (inside - inside.min()) / (
        inside.max() - inside.min()
    )
    sdf[find_boundaries(mask, mode="inner")] = 0
    return sdf


def blob_labels(batch: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, size, size, size), dtype=np.int64)
    for index in range(batch):
        field = ndimage.gaussian_filter(rng.standard_normal((size,) * 3), 2.0)
        labels[index] = field > np.quantile(field, 0.7)
    return torch.from_numpy(labels)


def test_dtc_terms_match_a_direct_computation():
    generator = torch.Generator().manual_seed(8)
    seg_logits = torch.randn(4, 1, 12, 12, 12, generator=generator, requires_grad=True)
    level_set = torch.tanh(torch.randn(4, 1, 12, 12, 12, generator=generator)).requires_grad_()
    labels = blob_labels(4, 12, seed=1)
    iteration = 2345
    terms = DTCLoss()(seg_logits, level_set, labels, None, labeled_batch_size=2, iteration=iteration)

    probabilities = torch.sigmoid(seg_logits.detach())[:2, 0]
    target = (labels[:2] == 1).float()
    dice = 1 - (2 * (probabilities * target).sum() + 1e-5) / ((probabilities**2).sum() + (target**2).sum() + 1e-5)
    sdf = torch.from_numpy(np.stack([reference_sdf(labels[i].numpy() == 1) for i in range(2)])).float()
    sdf_mse = torch.mean((level_set.detach()[:2, 0] - sdf) ** 2)
    consistency = torch.mean((torch.sigmoid(-1500 * level_set.detach()) - torch.sigmoid(seg_logits.detach())) ** 2)
    weight = 1.0 * math.exp(-5 * (1 - (iteration // 150) / 40) ** 2)  # reference: rampup(iter // 150, 40)

    torch.testing.assert_close(terms["dice"].detach(), dice)
    torch.testing.assert_close(terms["sdf_mse"].detach(), sdf_mse, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(terms["consistency"].detach(), consistency)
    assert terms["consistency_weight"].item() == pytest.approx(weight, rel=1e-6)
    torch.testing.assert_close(
        terms["total"].detach(), dice + 0.3 * sdf_mse + weight * consistency, atol=1e-6, rtol=1e-5
    )
    terms["total"].backward()
    assert seg_logits.grad[2:].abs().sum() > 0  # unlabeled rows train through the consistency term
    assert level_set.grad[2:].abs().sum() > 0


def test_dtc_given_sdf_targets_config_and_unlabeled_step():
    generator = torch.Generator().manual_seed(9)
    seg_logits = torch.randn(3, 1, 10, 10, 10, generator=generator)
    level_set = torch.tanh(torch.randn(3, 1, 10, 10, 10, generator=generator))
    labels = blob_labels(3, 10, seed=2)
    config = DTCLossConfig(
        beta=1.0,
        consistency_weight_max=0.1,
        consistency_rampup_step=1,
        consistency_rampup_iterations=1000,
        sdf_source="volume",
    )
    sdf_targets = torch.rand(3, 10, 10, 10, generator=generator) * 2 - 1
    terms = DTCLoss(config)(seg_logits, level_set, labels, sdf_targets, labeled_batch_size=3, iteration=500)
    torch.testing.assert_close(terms["sdf_mse"], torch.mean((level_set[:, 0] - sdf_targets) ** 2))
    assert terms["consistency_weight"].item() == pytest.approx(0.1 * math.exp(-1.25))
    torch.testing.assert_close(
        terms["total"], terms["dice"] + terms["sdf_mse"] + terms["consistency_weight"] * terms["consistency"]
    )
    with pytest.raises(MultiModalSegError, match="sdf_targets"):
        DTCLoss(config)(seg_logits, level_set, labels, None, labeled_batch_size=3, iteration=0)
    unlabeled = DTCLoss()(seg_logits, level_set, labels, None, labeled_batch_size=0, iteration=6000)
    assert unlabeled["dice"].item() == 0.0 and unlabeled["sdf_mse"].item() == 0.0
    torch.testing.assert_close(unlabeled["total"], unlabeled["consistency"])  # weight 1 at t = T


def test_dtc_multiclass_one_vs_rest_from_indices_or_one_hot():
    generator = torch.Generator().manual_seed(10)
    seg_logits = torch.randn(2, 2, 10, 10, 10, generator=generator)
    level_set = torch.tanh(torch.randn(2, 2, 10, 10, 10, generator=generator))
    first, second = blob_labels(2, 10, seed=3), blob_labels(2, 10, seed=4)
    indices = torch.where(second == 1, 2, first)  # class 2 overrides class 1
    one_hot = torch.stack([indices == 1, indices == 2], dim=1).long()
    loss = DTCLoss()
    from_indices = loss(seg_logits, level_set, indices, None, labeled_batch_size=2, iteration=100)
    from_one_hot = loss(seg_logits, level_set, one_hot, None, labeled_batch_size=2, iteration=100)
    for name in ("total", "dice", "sdf_mse", "consistency"):
        torch.testing.assert_close(from_indices[name], from_one_hot[name])
    per_channel = [squared_dice_loss(torch.sigmoid(seg_logits[:, c]), (indices == c + 1).float()) for c in range(2)]
    torch.testing.assert_close(from_indices["dice"], torch.stack(per_channel).mean())


# ---------------------------------------------------------------- ramp-up


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(40, 40) == 1.0
    assert sigmoid_rampup(400, 40) == 1.0 and sigmoid_rampup(-3, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 0) == 1.0
    values = [sigmoid_rampup(t, 40) for t in range(41)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_dtc_ramp_follows_the_reference_staircase():
    loss = DTCLoss()
    assert loss.consistency_weight(0) == loss.consistency_weight(149) == pytest.approx(math.exp(-5))
    assert loss.consistency_weight(150) == pytest.approx(sigmoid_rampup(1, 40))
    assert loss.consistency_weight(3000) == pytest.approx(math.exp(-1.25))
    assert loss.consistency_weight(6000) == 1.0
