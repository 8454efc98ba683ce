"""What ``train`` and ``finetune`` both build before the loop: RNGs, device, network, optimizer, step, data.

* :func:`seed_everything`: Python, numpy and torch RNGs from one seed; deterministic
  algorithms on request (DTC's ``--deterministic 1``: cudnn.benchmark off, deterministic on).
  Together with a single-threaded, seeded batch loader this makes CPU training bit-identical
  for the same seed (a test checks it).
* :func:`build_network`: MAML (one U-Net per modality, ``num_classes`` with background) or the
  DTC VNet (``num_classes`` foreground, one-vs-rest); checks that the patch fits the network.
* :func:`build_optimizer` / :func:`build_step`: SGD with the method's settings; the method's
  iteration (:class:`MAMLStep`, :class:`DTCStep`) with its loss.
* :func:`prepare_volumes` / :func:`make_batch_loader`: the data layer's ``prepare_case`` and
  ``TwoStreamBatchLoader`` (labeled first, then unlabeled in every batch; split per rank).
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from MultiModalSegLib.data_plan import DataPlan
    from MultiModalSegLib.datasets import Case
    from MultiModalSegLib.training.config import OptimizerConfig, TrainingConfig
    from MultiModalSegLib.training.data import LabelTable, ModalityTable
    from MultiModalSegLib.training.distributed import DistributedContext
    from MultiModalSegLib.training.validation import ValidationVolume


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch (all devices); optionally force deterministic kernels."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def network_architecture(config: TrainingConfig, modalities: list[str], num_foreground: int) -> dict[str, Any]:
    """The architecture dict (as a manifest stores it) that ``config`` asks for.

    ``config.architecture_overrides`` is merged over the settings; MAML's ``num_stages`` is
    dropped when the overrides give ``strides`` (their count fixes the depth).
    """
    overrides = dict(config.architecture_overrides or {})
    if config.method == "maml":
        settings: dict[str, Any] = {
            "modalities": list(modalities), "num_classes": num_foreground + 1,
            "base_filters": config.maml.base_filters, "max_filters": config.maml.max_filters,
            "num_stages": config.maml.depth, "deep_supervision": config.maml.deep_supervision}
        if "strides" in overrides and "num_stages" not in overrides:
            settings.pop("num_stages")
        return {"name": "MAML", "config": {**settings, **overrides}}
    if config.method == "unet":  # MAML's baselines: one U-Net with a MAML branch's settings (fusion_unet.py)
        settings = {
            "modalities": list(modalities), "num_classes": num_foreground + 1,
            "base_filters": config.maml.base_filters, "max_filters": config.maml.max_filters,
            "num_stages": config.maml.depth, "deep_supervision": config.maml.deep_supervision}
        for name in ("ma_kernel", "absent_fill"):  # MAML's fusion settings: a U-Net has no fusion
            overrides.pop(name, None)
        if "strides" in overrides and "num_stages" not in overrides:
            settings.pop("num_stages")
        return {"name": "FusionUNet", "config": {**settings, **overrides}}
    return {"name": "DTCVNet", "config": {
        "in_channels": len(modalities), "num_classes": num_foreground, "base_filters": config.dtc.base_filters,
        **overrides}}


def build_network(architecture: dict[str, Any], patch_size: tuple[int, int, int]) -> torch.nn.Module:
    """Build the network and refuse a patch size it cannot take, with the sizes that would work."""
    from MultiModalSegLib.models import build_model

    network = build_model(architecture)
    divisor = tuple(getattr(network, "input_divisor", (1, 1, 1)))
    if any(int(p) % int(d) for p, d in zip(patch_size, divisor)):
        fitting = tuple(max(int(d), int(p) // int(d) * int(d)) for p, d in zip(patch_size, divisor))
        raise MultiModalSegError(
            f"The patch {list(patch_size)} (z, y, x) does not fit the network: each size must be a multiple of "
            f"{list(divisor)}; use e.g. --patch {'x'.join(map(str, fitting))}.")
    return network


def build_optimizer(network: torch.nn.Module, settings: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD with the method's momentum, Nesterov and weight decay (both references use SGD)."""
    import torch

    return torch.optim.SGD(network.parameters(), lr=settings.learning_rate, momentum=settings.momentum,
                           nesterov=settings.nesterov and settings.momentum > 0, weight_decay=settings.weight_decay)


def build_step(config: TrainingConfig) -> Any:
    """The method's iteration with its loss."""
    if config.method == "maml":
        from MultiModalSegLib.losses import MAMLLoss
        from MultiModalSegLib.training.maml_step import MAMLStep

        joint_weight = "reference" if config.maml.joint_weight is None else float(config.maml.joint_weight)
        return MAMLStep(MAMLLoss(lambda_intra=config.maml.lambda_intra, joint_weight=joint_weight,
                                 lambda_deep=config.maml.lambda_deep),
                        consistency_weight=config.maml.unlabeled_consistency_weight,
                        rampup_iterations=config.maml.consistency_rampup_iterations)
    if config.method == "unet":
        # MAMLLoss over an output with no branches: deep-supervised Dice + CE of the one output
        # (nnU-Net's loss); no branch-joint consistency, so unlabeled cases add nothing
        from MultiModalSegLib.losses import MAMLLoss
        from MultiModalSegLib.training.maml_step import MAMLStep

        return MAMLStep(MAMLLoss(lambda_intra=0.0), consistency_weight=0.0)
    from MultiModalSegLib.losses import DTCLoss
    from MultiModalSegLib.training.dtc_step import DTCStep

    return DTCStep(DTCLoss(config.dtc.loss_config()))


def use_channels_last(device: torch.device, request: bool | None) -> bool:
    """Whether to train in channels-last 3D layout: as requested, else on CPU only.

    oneDNN's 3D convolutions run about 30 % faster on channels-last tensors on CPU (measured on
    the bundled MAML, batch 2 of 32x64x64); on CUDA the gain depends on cuDNN, so it is opt-in.
    """
    return bool(request) if request is not None else device.type == "cpu"


def make_grad_scaler(device: torch.device, amp: bool) -> Any:
    """A CUDA grad scaler when AMP is on (fp16 needs loss scaling), else None."""
    if not (amp and device.type == "cuda"):
        return None
    import torch

    return torch.amp.GradScaler("cuda")


def prepare_volumes(cases: list[Case], modalities: ModalityTable, preprocessing: dict[str, Any] | None = None,
                    minimum_shape: tuple[int, int, int] | None = None, plan: DataPlan | None = None) -> list[Any]:
    """Each case aligned to the reference grid, normalised and stacked (the data layer's ``prepare_case``).

    With a ``plan`` the cases are normalised by it and moved to its target spacing (what
    ``predict`` does to its inputs); without one (packages made before plans) they stay on their
    reference grid and are normalised per image with ``preprocessing``.
    """
    from MultiModalSegLib.sampling import prepare_case

    return [prepare_case(case, modalities.names, modalities.normalization, settings=preprocessing or None,
                         reference=modalities.reference, minimum_shape=minimum_shape, plan=plan)
            for case in cases]


def validation_volumes(prepared: list[Any], labels: LabelTable) -> list[ValidationVolume]:
    """Prepared held-out cases as :class:`ValidationVolume` (image ``[M, z, y, x]``, class indices)."""
    from MultiModalSegLib.training.validation import ValidationVolume

    return [ValidationVolume(name=p.case_id, image=p.image, label=labels.to_class_indices(p.label),
                             spacing=p.spacing) for p in prepared]


def sampling_config(method: str, patch_size: tuple[int, int, int], foreground_fraction: float,
                    augmentation: dict[str, Any] | None = None) -> Any:
    """The method's patch recipe: DTC's random crop + RandomRotFlip, nnU-Net's mirroring for MAML.

    DTC's rotation by 90 degrees needs a square axial patch; for a non-square one it is left out.
    ``augmentation`` (``TrainingConfig.augmentation``) replaces recipe fields by name.
    """
    import dataclasses

    from MultiModalSegLib.sampling import PatchSamplingConfig

    if method == "dtc":
        recipe = PatchSamplingConfig.for_dtc(patch_size)
        if patch_size[1] != patch_size[2]:
            recipe = dataclasses.replace(recipe, rot_flip=False, mirror_axes=(1, 2))
    else:
        recipe = PatchSamplingConfig.for_maml(patch_size)
    recipe = dataclasses.replace(recipe, foreground_fraction=float(foreground_fraction))
    if augmentation:
        known = {f.name for f in dataclasses.fields(recipe)} - {"patch_size", "foreground_fraction"}
        unknown = sorted(set(augmentation) - known)
        if unknown:
            raise MultiModalSegError(
                f"Unknown augmentation setting(s) {', '.join(unknown)}; use some of {', '.join(sorted(known))}.")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in augmentation.items()}
        recipe = dataclasses.replace(recipe, **values)
    return recipe


def make_batch_loader(labeled: list[Any], unlabeled: list[Any], *, method: str, labels: LabelTable,
                      patch_size: tuple[int, int, int], batch_size: int, labeled_batch_size: int,
                      foreground_fraction: float, seed: int, context: DistributedContext, num_workers: int = 0,
                      start_iteration: int = 0, augmentation: dict[str, Any] | None = None) -> Any:
    """An endless iterator of two-stream batches for this rank (the data layer's ``TwoStreamBatchLoader``).

    Labeled patches come first in every batch, then unlabeled ones; without unlabeled cases the
    whole batch is labeled. DTC batches carry per-patch signed-distance targets. Each rank draws
    its own stream (seeded by seed and rank). ``start_iteration`` continues the stream at that
    batch on resume (batch ``i`` is seeded by seed, rank and ``i``), so a resumed run draws
    exactly the batches the uninterrupted run would have drawn.
    """
    from MultiModalSegLib.sampling import TwoStreamBatchLoader

    if not unlabeled:
        labeled_batch_size = batch_size
    recipe = sampling_config(method, patch_size, foreground_fraction, augmentation)
    return TwoStreamBatchLoader(list(labeled) + list(unlabeled), recipe, labels.values, batch_size,
                                labeled_batch_size, with_sdf=method == "dtc",
                                seed=seed, start_batch=start_iteration, num_workers=num_workers, rank=context.rank,
                                world_size=context.world_size)
