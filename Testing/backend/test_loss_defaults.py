"""The losses' defaults, pinned by numbers worked out by hand (never by the class under test).

Each input is chosen so that every term has a closed form: constant logits give one softmax
probability per class everywhere, so cross-entropy, soft Dice and their weighted sums are
arithmetic on voxel counts (written out next to each expectation). Changing a default --
the Dice smoothing 1e-5 of nnU-Net and DTC, DiceCE's weights 1 and 1, nnU-Net's batch Dice
without background, MAML's ``w_0 * L_joint + lambda * sum_i L_intra`` with the reference's
``w_0``, the deep-supervision weights, DTC's beta 0.3, k = 1500 and its consistency ramp --
changes a number here.
"""

from __future__ import annotations

import math

import pytest
import torch

from MultiModalSegLib.levelset import heaviside
from MultiModalSegLib.losses import DiceCELoss, DTCLoss, DTCLossConfig, MAMLLoss, SoftDiceLoss, squared_dice_loss
from MultiModalSegLib.training.config import TrainingConfig
from MultiModalSegLib.training.setup import build_step

SMOOTH = 1e-5  # nnU-Net's SoftDiceLoss smooth and DTC's losses.dice_loss smooth


def two_samples_three_classes() -> tuple[torch.Tensor, torch.Tensor]:
    """Zero logits (softmax 1/3 everywhere) over 2 samples of 2x2x2; class 1 fills 4 voxels of
    sample 0, class 2 fills 2 voxels of sample 1, the rest is background."""
    logits = torch.zeros(2, 3, 2, 2, 2)
    target = torch.zeros(2, 2, 2, 2, dtype=torch.long)
    target[0, 0] = 1  # 4 voxels
    target[1, 1, 0] = 2  # 2 voxels
    return logits, target


def test_soft_dice_defaults_batch_dice_no_background_smooth_1e5():
    logits, target = two_samples_three_classes()
    # pooled over the batch (16 voxels, p = 1/3): class k with n_k voxels has TP = n_k/3,
    # FP = (16 - n_k)/3, FN = 2 n_k/3, so dice_k = (2 n_k/3 + s) / (16/3 + n_k + s)
    dice_1 = (8 / 3 + SMOOTH) / (16 / 3 + 4 + SMOOTH)
    dice_2 = (4 / 3 + SMOOTH) / (16 / 3 + 2 + SMOOTH)
    expected = 1 - (dice_1 + dice_2) / 2  # background left out
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(expected, abs=1e-6)
    # with smooth 1.0 (the regression this guards) the value is about 0.045 lower
    with_smooth_one = 1 - ((8 / 3 + 1) / (16 / 3 + 5) + (4 / 3 + 1) / (16 / 3 + 3)) / 2
    assert abs(expected - with_smooth_one) > 0.04


def test_dice_ce_defaults_weights_one_and_one():
    logits, target = two_samples_three_classes()
    dice_1 = (8 / 3 + SMOOTH) / (16 / 3 + 4 + SMOOTH)
    dice_2 = (4 / 3 + SMOOTH) / (16 / 3 + 2 + SMOOTH)
    # cross-entropy of a uniform softmax over 3 classes is ln 3 at every voxel
    expected = 1.0 * math.log(3) + 1.0 * (1 - (dice_1 + dice_2) / 2)
    assert DiceCELoss()(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_squared_dice_default_smooth_1e5():
    probabilities = torch.tensor([0.5, 0.5, 0.5, 0.5])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # 1 - (2 * 0.5 + s) / (4 * 0.25 + 1 + s); with s = 1 it would be 1/3
    expected = 1 - (1 + SMOOTH) / (2 + SMOOTH)
    assert squared_dice_loss(probabilities, target).item() == pytest.approx(expected, abs=1e-7)


# ---------------------------------------------------------------- MAML


def half_space_target(size: int) -> torch.Tensor:
    """Class 1 where x < size/2: every nearest-exact downsampling by 2 keeps exactly half."""
    target = torch.zeros(1, size, size, size, dtype=torch.long)
    target[..., : size // 2] = 1
    return target


def constant_logits(size: int, c: float) -> torch.Tensor:
    """Two classes, logits (0, c) everywhere: p1 = sigmoid(c)."""
    logits = torch.zeros(1, 2, size, size, size)
    logits[:, 1] = c
    return logits


def dice_ce_of_constant_logits(c: float, voxels: int) -> float:
    """DiceCE of :func:`constant_logits` against a half-space target of ``voxels`` voxels, by hand.

    p = sigmoid(c). Cross-entropy: half the voxels cost -ln p, half -ln(1 - p). Dice of class 1
    (n = N/2): TP = N p/2, FP = N p/2, FN = N (1 - p)/2, so
    dice = (N p + s) / (N p + N/2 + s).
    """
    p = 1 / (1 + math.exp(-c))
    cross_entropy = 0.5 * (-math.log(p)) + 0.5 * (-math.log(1 - p))
    dice = (voxels * p + SMOOTH) / (voxels * p + voxels / 2 + SMOOTH)
    return cross_entropy + (1 - dice)


# A branch returns four outputs (16^3 .. 2^3): nnU-Net's weights 1, 1/2, 1/4 and 0 for the lowest,
# normalised: 4/7, 2/7, 1/7, 0. The reference weighs the joint output by the first of them.
SIZES = (16, 8, 4, 2)
WEIGHTS = (4 / 7, 2 / 7, 1 / 7, 0.0)
BRANCH_LOGITS = {"t1": (0.5, -1.0, 2.0, 3.0), "t2": (-0.25, 1.5, -2.0, 0.75)}
JOINT_LOGIT = 1.25


def maml_outputs() -> dict:
    return {
        "joint": constant_logits(16, JOINT_LOGIT),
        "branches": {name: constant_logits(16, cs[0]) for name, cs in BRANCH_LOGITS.items()},
        "branches_deep": {name: [constant_logits(size, c) for size, c in zip(SIZES[1:], cs[1:])]
                          for name, cs in BRANCH_LOGITS.items()},
        "attention": {},
    }


def branch_loss_by_hand(name: str) -> float:
    return sum(w * dice_ce_of_constant_logits(c, size**3) for w, size, c in zip(WEIGHTS, SIZES, BRANCH_LOGITS[name]))


def test_maml_loss_defaults_reference_weighting_by_hand():
    terms = MAMLLoss()(maml_outputs(), half_space_target(16))
    joint = dice_ce_of_constant_logits(JOINT_LOGIT, 16**3)
    intra = {name: branch_loss_by_hand(name) for name in BRANCH_LOGITS}
    assert terms["joint"].item() == pytest.approx(joint, abs=1e-5)
    for name, value in intra.items():
        assert terms[f"intra/{name}"].item() == pytest.approx(value, abs=1e-5)
    # total = w_0 * L_joint + lambda * sum_i L_intra, w_0 = 4/7, lambda = 1
    assert terms["total"].item() == pytest.approx(4 / 7 * joint + 1.0 * sum(intra.values()), abs=1e-5)


def test_training_builds_each_method_with_the_reference_loss_settings():
    outputs, target = maml_outputs(), half_space_target(16)
    joint = dice_ce_of_constant_logits(JOINT_LOGIT, 16**3)
    intra = sum(branch_loss_by_hand(name) for name in BRANCH_LOGITS)

    maml = build_step(TrainingConfig.for_method("maml"))
    assert maml.loss(outputs, target)["total"].item() == pytest.approx(4 / 7 * joint + intra, abs=1e-5)
    assert maml.consistency_weight == 1.0 and maml.rampup_iterations == 6000

    # the U-Net baseline: one deep-supervised head, nnU-Net's weights, no branches and no consistency
    unet = build_step(TrainingConfig.for_method("unet"))
    single = {"joint": constant_logits(16, 0.5), "branches": {}, "attention": {},
              "joint_deep": [constant_logits(size, c) for size, c in zip(SIZES[1:], (-1.0, 2.0, 3.0))]}
    by_hand = sum(w * dice_ce_of_constant_logits(c, size**3)
                  for w, size, c in zip(WEIGHTS, SIZES, (0.5, -1.0, 2.0, 3.0)))
    assert unet.loss(single, target)["total"].item() == pytest.approx(by_hand, abs=1e-5)
    assert unet.consistency_weight == 0.0

    dtc = build_step(TrainingConfig.for_method("dtc")).loss.config
    assert (dtc.beta, dtc.consistency_weight_max, dtc.consistency_rampup_iterations, dtc.consistency_rampup_step,
            dtc.heaviside_k, dtc.dice_smooth, dtc.variant) == (0.3, 1.0, 6000, 150, 1500, 1e-5, "seg+lsf+dtc")


# ---------------------------------------------------------------- DTC


def test_dtc_loss_defaults_by_hand():
    # one labeled sample of 4 voxels (first voxel foreground), one unlabeled; seg logits 0 (p = 1/2)
    seg_logits = torch.zeros(2, 1, 1, 1, 4)
    level_set = torch.full((2, 1, 1, 1, 4), 0.001)  # H = sigmoid(-1500 * 0.001) = sigmoid(-1.5)
    labels = torch.tensor([[[[1, 0, 0, 0]]], [[[0, 0, 0, 0]]]])
    sdf = torch.tensor([[[[[-1.0, 0.5, 0.75, 1.0]]]]])
    h = 1 / (1 + math.exp(1.5))
    dice = 1 - (2 * 0.5 + SMOOTH) / (4 * 0.25 + 1 + SMOOTH)  # V-Net Dice of the labeled sample
    sdf_mse = ((0.001 + 1) ** 2 + (0.001 - 0.5) ** 2 + (0.001 - 0.75) ** 2 + (0.001 - 1) ** 2) / 4
    consistency = (h - 0.5) ** 2  # every voxel of both samples
    loss = DTCLoss()
    for iteration, ramp in ((0, math.exp(-5)), (149, math.exp(-5)), (150, math.exp(-5 * (1 - 1 / 40) ** 2)),
                            (3000, math.exp(-1.25)), (5999, math.exp(-5 * (1 - 39 / 40) ** 2)), (6000, 1.0),
                            (9000, 1.0)):
        terms = loss(seg_logits, level_set, labels, sdf, labeled_batch_size=1, iteration=iteration)
        assert terms["dice"].item() == pytest.approx(dice, abs=1e-6)
        assert terms["sdf_mse"].item() == pytest.approx(sdf_mse, abs=1e-6)
        assert terms["consistency"].item() == pytest.approx(consistency, abs=1e-6)
        assert terms["consistency_weight"].item() == pytest.approx(ramp, rel=1e-6)
        assert terms["total"].item() == pytest.approx(dice + 0.3 * sdf_mse + ramp * consistency, abs=1e-6)


def test_dtc_config_and_heaviside_defaults():
    config = DTCLossConfig()
    assert (config.beta, config.consistency_weight_max, config.consistency_rampup_iterations,
            config.consistency_rampup_step, config.heaviside_k, config.dice_smooth) == (0.3, 1.0, 6000, 150, 1500, 1e-5)
    assert config.sdf_source == "patch" and config.sdf_spacing is None and config.variant == "seg+lsf+dtc"
    # inference's heaviside uses the same k = 1500: sigmoid(-1500 * 0.001) = sigmoid(-1.5)
    assert heaviside(torch.tensor(0.001)).item() == pytest.approx(1 / (1 + math.exp(1.5)), rel=1e-6)
