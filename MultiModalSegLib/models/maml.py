"""MAML: Modality-aware Mutual Learning (Zhang et al., MICCAI 2021).

One nnU-Net style 3D U-Net per modality (:class:`UNet3D`, one input channel each). Each
branch predicts the segmentation from its own modality alone (the intra-modality
outputs, trained with ``L_intra``) and gives its last full-resolution decoder feature
``F_i`` (``F = base_filters`` channels). The joint output fuses them:

* ``F_dual = Conv3x3x3(concat_i F_i)``            ``[B, M*F, ...] -> [B, F, ...]``
* ``A_i = ModalityAware_i(F_i, F_dual)``          ``[B, F, ...]`` in ``[0, 1]``
* ``F_att = sum_i A_i * F_i``;  ``joint = Conv1x1x1(F_att)`` (no bias) ``[B, K, ...]``

**Missing modalities** (``forward(x, available=[...])``): absent branches are not run.

* One modality present: the joint output *is* that branch's logits (the authors' rule:
  each branch is a complete single-modality segmenter), its attention is all ones
  (``A_i = 1`` gives ``F_att = F_i``), and nothing is returned for absent modalities.
* Two or more present: the fusion runs over the present branches only. ``F_dual``'s
  convolution was trained with all ``M`` slots of its input filled, so an absent slot is
  filled according to ``absent_fill``:

  - ``"mean"`` (default): the mean of the present ``F_i``. Every ``F_i`` comes out of
    the same InstanceNorm-LeakyReLU layer, so the mean has the statistics the slot had
    in training and ``F_dual`` -- the input of every ``A_i`` -- stays in the range the
    modality-aware modules were trained on, while carrying information from the present
    modalities only (mean imputation of a missing feature, as in HeMIS-style fusion).
  - ``"zeros"``: zeros in the slot, i.e. the absent modality's weights of the fusion conv
    drop out. This shrinks and shifts ``F_dual`` away from its training distribution
    unless the model was trained with zero-filled modality dropout; choose it for such
    models.

  ``F_att`` sums over the present modalities only. The reference code has no
  missing-modality path at all (it always runs every branch); this is our addition.

**Deep supervision**: with ``deep_supervision=True`` and in training mode the output dict
also holds ``"branches_deep"``: ``{name: [logits at 1/strides[0], 1/(strides[0]*strides[1]),
...]}``, highest resolution first, one per decoder stage below full resolution. There is
no ``"joint_deep"``: as in the reference, the fusion exists at full resolution only, so the
joint output is supervised at full resolution only. The reference's loss weights the
branch outputs ``1, 1/2, 1/4, ...`` over resolutions, drops the lowest one and
normalises; that belongs to the loss, not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models.blocks import Triple, check_modality_input, stride_product, to_triple
from MultiModalSegLib.models.modality_aware import MODALITY_AWARE_KERNELS, ModalityAwareModule
from MultiModalSegLib.models.unet3d import UNet3D

AbsentFill = Literal["mean", "zeros"]
ABSENT_FILLS: tuple[str, ...] = ("mean", "zeros")
DEFAULT_NUM_STAGES = 6


@dataclass(frozen=True)
class MAMLConfig:
    """The constructor arguments of :class:`MAML`, with the paper / reference defaults.

    ``resolved()`` validates it and fills ``num_stages``, ``strides`` and ``kernel_sizes``.
    """

    modalities: tuple[str, ...]
    # including background (softmax over classes, as nnU-Net)
    num_classes: int
    # channels of the first stage and of F_i. The reference's MAMLTrainerV2 halves nnU-Net's
    # base of 32 for each branch (base_num_features // 2); the paper only says "nnU-Net".
    base_filters: int = 16
    # nnU-Net v1 Generic_UNet.MAX_NUM_FILTERS_3D
    max_filters: int = 320
    # resolution stages including the bottleneck. None: len(strides) + 1, or 6 without strides
    # (nnU-Net's plan for 128^3 BraTS patches: 5 downsamplings). The reference takes both from
    # the data set's nnU-Net plan.
    num_stages: int | None = None
    # per downsampling (num_stages - 1 of them), per axis (z, y, x); None: (2, 2, 2) each.
    # Anisotropic data: e.g. ((1, 2, 2), (1, 2, 2), (2, 2, 2), ...), as nnU-Net plans do.
    strides: tuple[Triple, ...] | None = None
    # per stage (num_stages of them), odd; None: 3x3x3 everywhere (nnU-Net plans may use
    # (1, 3, 3) for stages whose z spacing is much coarser).
    kernel_sizes: tuple[Triple, ...] | None = None
    # the reference trains every branch with deep supervision (nnU-Net default)
    deep_supervision: bool = True
    # second conv of the modality-aware module: "reference" 3x3x3 (the authors' code),
    # "slide" 1x1x1 (the paper's figure)
    ma_kernel: Literal["reference", "slide"] = "reference"
    # what F_dual's conv sees in an absent modality's slot; not in paper or reference (see module doc)
    absent_fill: AbsentFill = "mean"

    def resolved(self) -> MAMLConfig:
        """A validated copy with every optional field filled; raises :class:`MultiModalSegError`."""
        if isinstance(self.modalities, str) or not isinstance(self.modalities, Iterable):
            raise MultiModalSegError(
                f"MAML needs a list of modality names, e.g. ['arterial', 'venous'], not {self.modalities!r}.")
        modalities = tuple(self.modalities)
        if not modalities or not all(isinstance(name, str) and name for name in modalities):
            raise MultiModalSegError(
                f"MAML needs a non-empty list of non-empty modality names, not {list(modalities)!r}.")
        if len(set(modalities)) != len(modalities):
            raise MultiModalSegError(f"MAML modality names must be unique; got {list(modalities)!r}.")
        _require_int("num_classes", self.num_classes, minimum=2,
                     hint="it counts the background too (2 for one foreground label)")
        _require_int("base_filters", self.base_filters, minimum=1)
        _require_int("max_filters", self.max_filters, minimum=self.base_filters)

        if self.strides is None:
            num_stages = DEFAULT_NUM_STAGES if self.num_stages is None else self.num_stages
            _require_int("num_stages", num_stages, minimum=2)
            strides = tuple((2, 2, 2) for _ in range(num_stages - 1))
        else:
            if isinstance(self.strides, (str, bytes)) or not isinstance(self.strides, Iterable):
                raise MultiModalSegError(f"MAML strides must be a list of (z, y, x) strides, not {self.strides!r}.")
            strides = tuple(to_triple(s, f"strides[{i}]") for i, s in enumerate(self.strides))
            num_stages = len(strides) + 1 if self.num_stages is None else self.num_stages
            _require_int("num_stages", num_stages, minimum=2)
            if len(strides) != num_stages - 1:
                raise MultiModalSegError(
                    f"MAML has {num_stages} stages, so it needs {num_stages - 1} strides, not {len(strides)}; "
                    "give one stride per downsampling or leave num_stages out.")
        if any(s > 2 for stride in strides for s in stride):
            raise MultiModalSegError(f"MAML strides must be 1 or 2 per axis; got {[list(s) for s in strides]}.")

        if self.kernel_sizes is None:
            kernel_sizes = tuple((3, 3, 3) for _ in range(num_stages))
        else:
            if isinstance(self.kernel_sizes, (str, bytes)) or not isinstance(self.kernel_sizes, Iterable):
                raise MultiModalSegError(
                    f"MAML kernel_sizes must be a list of (z, y, x) kernel sizes, not {self.kernel_sizes!r}.")
            kernel_sizes = tuple(to_triple(k, f"kernel_sizes[{i}]") for i, k in enumerate(self.kernel_sizes))
            if len(kernel_sizes) != num_stages:
                raise MultiModalSegError(
                    f"MAML has {num_stages} stages, so it needs {num_stages} kernel sizes, not {len(kernel_sizes)}.")
            if any(k % 2 == 0 for kernel in kernel_sizes for k in kernel):
                raise MultiModalSegError(f"MAML kernel sizes must be odd; got {[list(k) for k in kernel_sizes]}.")

        if not isinstance(self.deep_supervision, bool):
            raise MultiModalSegError(f"MAML deep_supervision must be true or false, not {self.deep_supervision!r}.")
        if self.ma_kernel not in MODALITY_AWARE_KERNELS:
            raise MultiModalSegError(
                f"MAML ma_kernel must be one of {', '.join(MODALITY_AWARE_KERNELS)}, not {self.ma_kernel!r}.")
        if self.absent_fill not in ABSENT_FILLS:
            raise MultiModalSegError(
                f"MAML absent_fill must be one of {', '.join(ABSENT_FILLS)}, not {self.absent_fill!r}.")
        return replace(self, modalities=modalities, num_stages=num_stages, strides=strides,
                       kernel_sizes=kernel_sizes)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values (tuples become lists)."""
        return _jsonable(asdict(self))


def _require_int(name: str, value: Any, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = f" ({hint})" if hint else ""
        raise MultiModalSegError(f"MAML {name} must be an integer >= {minimum}{extra}, not {value!r}.")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class MAML(nn.Module):
    """Modality-aware mutual learning network (see the module docstring for the maths).

    ``MAML(["arterial", "venous"], num_classes=3)`` builds two U-Net branches, the fusion
    conv, one modality-aware module per modality and the joint 1x1x1 head. With a single
    modality there is nothing to fuse and only the branch is built.
    """

    def __init__(self, modalities: Sequence[str], num_classes: int,
                 base_filters: int = MAMLConfig.base_filters,
                 max_filters: int = MAMLConfig.max_filters,
                 num_stages: int | None = MAMLConfig.num_stages,
                 strides: Sequence[int | Sequence[int]] | None = MAMLConfig.strides,
                 kernel_sizes: Sequence[int | Sequence[int]] | None = MAMLConfig.kernel_sizes,
                 deep_supervision: bool = MAMLConfig.deep_supervision,
                 ma_kernel: Literal["reference", "slide"] = MAMLConfig.ma_kernel,
                 absent_fill: AbsentFill = MAMLConfig.absent_fill):
        super().__init__()
        config = MAMLConfig(
            modalities=modalities, num_classes=num_classes, base_filters=base_filters,  # type: ignore[arg-type]
            max_filters=max_filters, num_stages=num_stages, strides=strides,  # type: ignore[arg-type]
            kernel_sizes=kernel_sizes, deep_supervision=deep_supervision,  # type: ignore[arg-type]
            ma_kernel=ma_kernel, absent_fill=absent_fill).resolved()
        self.config = config
        self.architecture: dict[str, Any] = {"name": "MAML", "config": config.to_json()}
        self.modalities: tuple[str, ...] = config.modalities
        self.num_classes = config.num_classes
        self.feature_channels = config.base_filters

        strides_list = list(config.strides)  # type: ignore[arg-type]
        kernels_list = list(config.kernel_sizes)  # type: ignore[arg-type]
        # indexed by position in `modalities`, so renaming a modality keeps the weights valid
        self.branches = nn.ModuleList(
            UNet3D(1, config.num_classes, config.base_filters, config.max_filters, strides_list, kernels_list,
                   config.deep_supervision)
            for _ in self.modalities)
        num_modalities = len(self.modalities)
        if num_modalities > 1:
            width = config.base_filters
            # as the reference: 3x3x3 with bias, no norm or nonlinearity, PyTorch default init
            self.fusion = nn.Conv3d(num_modalities * width, width, 3, padding=1, bias=True)
            self.modality_aware = nn.ModuleList(
                ModalityAwareModule(width, config.ma_kernel) for _ in self.modalities)
            # the reference's output conv: 1x1x1, no bias (nnU-Net seg_output_use_bias=False)
            self.joint_head = nn.Conv3d(width, config.num_classes, 1, bias=False)

    @property
    def input_divisor(self) -> Triple:
        """Each spatial size ``(z, y, x)`` must be a multiple of this (product of the strides)."""
        return stride_product(self.config.strides)  # type: ignore[arg-type]

    def present_modalities(self, available: Iterable[str] | None) -> list[int]:
        """Indices (in ``modalities`` order) of the modalities named in ``available`` (None: all)."""
        if available is None:
            return list(range(len(self.modalities)))
        if isinstance(available, str):
            available = [available]
        wanted = set(available)
        unknown = sorted(wanted - set(self.modalities))
        if unknown:
            raise MultiModalSegError(
                f"Unknown modality {', '.join(map(repr, unknown))}: this model takes {', '.join(self.modalities)}.")
        if not wanted:
            raise MultiModalSegError(
                f"No modality is available: give at least one of {', '.join(self.modalities)}.")
        return [index for index, name in enumerate(self.modalities) if name in wanted]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`MultiModalSegError` unless ``x`` is ``[B, M, z, y, x]`` with valid sizes."""
        check_modality_input(x, self.modalities, self.input_divisor, "MAML")

    def forward(self, x: torch.Tensor, available: Iterable[str] | None = None) -> dict[str, Any]:
        """Segment ``x`` ``[B, M, z, y, x]`` (channels in the order of ``modalities``).

        ``available`` names the modalities present (None: all); the channels of the
        others are never read, so they may hold anything (zeros, say).

        Returns ``{"joint": [B, K, z, y, x] logits, "branches": {name: [B, K, z, y, x]
        logits}, "attention": {name: A_i [B, F, z, y, x]}}`` for the present modalities, plus
        ``"branches_deep": {name: [lower-resolution logits, highest first]}`` when
        ``deep_supervision`` is on and the model is in training mode.
        """
        present = self.present_modalities(available)
        self.check_input(x)
        with_deep = self.config.deep_supervision and self.training
        outputs = {index: self.branches[index](x[:, index:index + 1], with_deep_outputs=with_deep)
                   for index in present}
        branches = {self.modalities[index]: outputs[index].logits for index in present}

        if len(present) == 1:
            (index,) = present
            joint = outputs[index].logits  # the authors' single-modality rule
            attention = {self.modalities[index]: torch.ones_like(outputs[index].features)}
        else:
            present_features = [outputs[index].features for index in present]
            if len(present) == len(self.modalities):
                slots = present_features
            else:
                if self.config.absent_fill == "mean":
                    fill = torch.stack(present_features).mean(dim=0)
                else:
                    fill = torch.zeros_like(present_features[0])
                slots = [outputs[index].features if index in outputs else fill
                         for index in range(len(self.modalities))]
            dual = self.fusion(torch.cat(slots, dim=1))
            attention = {}
            fused = None
            for index in present:
                attention_map = self.modality_aware[index](outputs[index].features, dual)
                attention[self.modalities[index]] = attention_map
                weighted = attention_map * outputs[index].features
                fused = weighted if fused is None else fused + weighted
            joint = self.joint_head(fused)

        result: dict[str, Any] = {"joint": joint, "branches": branches, "attention": attention}
        if with_deep:
            result["branches_deep"] = {self.modalities[index]: outputs[index].deep_logits for index in present}
        return result
