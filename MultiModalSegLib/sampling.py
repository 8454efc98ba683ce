"""Training patches: prepared cases, random patch sampling with augmentation, two-stream batches.

Training does not look at whole volumes: it draws fixed-size patches. This module turns a
:class:`~MultiModalSegLib.datasets.Case` into arrays once (:func:`prepare_case`: align the
modalities onto the reference grid, normalise each, stack them as channels), draws
augmented patches from the prepared cases (:class:`PatchSampler`), and assembles the
batches both training loops consume (:class:`TwoStreamBatchLoader`).

What the two references do, and what the defaults reproduce:

* DTC (HiLab-git/DTC ``code/dataloaders/la_heart.py``, ``train_la_dtc.py``): ``RandomCrop``
  of 112x112x80 (x, y, z; ``(80, 112, 112)`` in array order) anywhere in the volume, no
  foreground forcing, then ``RandomRotFlip``: ``np.rot90`` by k in 0..3 in the axial plane
  and a flip along one of the two in-plane axes. ``TwoStreamBatchSampler`` fills each batch
  of 4 with 2 labeled and 2 unlabeled cases. :meth:`PatchSamplingConfig.for_dtc`.
* MAML (nnU-Net v1): a third of the patches are centred on a random voxel of a random
  foreground class present in the case (``oversample_foreground_percent = 0.33``), the
  rest anywhere; mirroring along every axis with probability 0.5. nnU-Net also rotates,
  scales, deforms and alters gamma/contrast; those are off in both recipes (the intensity
  jitter below is a simple stand-in). :meth:`PatchSamplingConfig.for_maml`. Opt-in
  rotation, zoom, gamma and noise (``rotation_degrees``, ``scale_range``, ``gamma_range``,
  ``noise_std``) exist for tiny data sets, e.g. the one-volume ``maml-brain-tissue-mr3``.

Foreground forcing (``foreground_rule``): ``"per_batch"`` is nnU-Net's rule: labeled slot
``i`` of a batch of ``B_l`` labeled patches is forced when ``i >= round(B_l * (1 - f))``, so a
batch of 2 at ``f = 0.33`` always holds one foreground-centred patch (50 %), which is what the
MAML reference trains with. A single labeled patch per batch cannot follow that rule (it would
never be forced at f < 0.5), so it is forced with probability ``f`` (nnU-Net v2's
``probabilistic_oversampling``), the ``"probabilistic"`` rule for every batch size.

Which foreground class a forced patch is centred on (``class_choice``): nnU-Net draws
uniformly among the classes present in the case (``"uniform"``). With a large and a small
class (liver and tumour, edema and necrotic core) the small one then gets a quarter of the
patches at best. ``"rare"`` (the bundled recipes' default) draws a present class ``c`` with
probability proportional to ``1 / sqrt(f_c)``, ``f_c`` its share of the training set's
foreground voxels, so the rarest class gets the largest share without starving the others
(patches centred on a small lesion still contain the organ around it). The measured effect
is in docs/benchmarks.md (``python bench/bench_sampling.py``).

Randomness: every draw takes a ``numpy.random.Generator``. The batch loader draws batch
``i`` of rank ``r`` from its own generator, seeded ``numpy.random.SeedSequence([seed, r, i])``
(:func:`batch_seed`), so the stream is fixed by ``seed`` and ``rank`` alone: the same with any
number of worker processes, and a resumed training run continues it exactly by starting at
batch ``i`` = the checkpoint's iteration (no state to save). Ranks of a DistributedDataParallel
job draw different patches (unlike ``seed + rank``, seed 0 rank 1 never equals seed 1 rank 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import SimpleITK as sitk
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from MultiModalSegLib.datasets import Case
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.data_plan import DataPlan
from MultiModalSegLib.levelset import signed_distance_map
from MultiModalSegLib.plan_space import Grid, image_to_grid, label_to_grid, network_grid
from MultiModalSegLib.preprocessing import NormalizationSettings, align_to_reference, normalize_intensity

__all__ = [
    "PatchSampler",
    "PatchSamplingConfig",
    "PreparedCase",
    "TwoStreamBatchLoader",
    "batch_seed",
    "class_index_lookup",
    "pad_to_shape",
    "prepare_case",
]

Shape3 = tuple[int, int, int]
FOREGROUND_RULES = ("per_batch", "probabilistic")
CLASS_CHOICES = ("rare", "uniform")


# --------------------------------------------------------------------------- prepared cases


@dataclass
class PreparedCase:
    """A case as arrays on one voxel grid, ready for patch sampling.

    ``image`` is float32 ``[M, z, y, x]`` with one normalised channel per modality in
    ``modalities`` order; ``label`` is int16 ``[z, y, x]`` with the label values of the file
    (not class indices) or None; ``spacing`` is in array order (mm). ``padding`` is the
    ``((before, after), ...)`` per spatial axis added to reach a minimum shape.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    modalities: tuple[str, ...]
    source: str = ""
    padding: tuple[tuple[int, int], ...] = ((0, 0), (0, 0), (0, 0))

    @property
    def is_labeled(self) -> bool:
        return self.label is not None

    @property
    def shape(self) -> Shape3:
        """Spatial shape ``(z, y, x)``."""
        return tuple(self.image.shape[1:])  # type: ignore[return-value]


def prepare_case(case: Case, modalities: Sequence[str], normalization: Mapping[str, str],
                 settings: NormalizationSettings | dict[str, Any] | None = None, reference: str | None = None,
                 minimum_shape: Sequence[int] | None = None, plan: DataPlan | None = None) -> PreparedCase:
    """Align, normalise and stack one case's modalities (and its label) for training.

    Every modality is resampled onto the grid of ``reference`` with
    :func:`~MultiModalSegLib.preprocessing.align_to_reference` (images already on it pass
    through untouched), then normalised with
    :func:`~MultiModalSegLib.preprocessing.normalize_intensity` by its scheme, as inference
    does. With a ``plan`` (:class:`~MultiModalSegLib.data_plan.DataPlan`) its per-modality
    normalisation replaces ``normalization`` and ``settings``, and the stack and the label are
    then moved to the plan's target spacing (:mod:`MultiModalSegLib.plan_space`: linear for
    images, one-hot linear for the label), exactly as ``predict`` moves its inputs. The label
    keeps its values. When ``minimum_shape`` is given and the volume is
    smaller along an axis, it is padded evenly on both sides (images with 0 after
    normalisation, the label with background 0), like DTC's ``RandomCrop``.

    Args:
        case: the case.
        modalities: the model's modalities, in channel order.
        normalization: scheme per modality, ``"ct"``, ``"mr"`` or ``"none"``.
        settings: normalisation settings (a model manifest's ``preprocessing``).
        reference: the modality whose grid all others take; default ``modalities[0]``.
        minimum_shape: ``(z, y, x)``, usually the patch size.

    Raises:
        MultiModalSegError: a modality or its normalisation is missing, the images do not
            overlap, or the label holds values outside int16.
    """
    modalities = list(modalities)
    if not modalities:
        raise MultiModalSegError("No modalities were given; pass the model's modality names.")
    reference = reference if reference is not None else modalities[0]
    missing = [name for name in modalities if name not in case.images]
    if missing:
        raise MultiModalSegError(
            f"Case '{case.case_id}' ({case.source}) has no {', '.join(missing)} image; the model needs "
            f"{', '.join(modalities)}.")
    if plan is not None:
        normalization = {name: plan.scheme(name) for name in modalities}
    unnamed = [name for name in modalities if name not in normalization]
    if unnamed:
        raise MultiModalSegError(
            f"No intensity normalisation is set for {', '.join(unnamed)}; give 'ct', 'mr' or 'none' for every "
            "modality.")
    aligned, label_image, _ = align_to_reference({name: case.images[name] for name in modalities}, reference,
                                                 label=case.label)
    channels = [normalize_intensity(sitk.GetArrayViewFromImage(aligned[name]), normalization[name],
                                    plan.settings(name) if plan is not None else settings)
                for name in modalities]
    source_grid = target_grid = Grid.of(aligned[reference])
    if plan is not None:
        target_grid = network_grid(source_grid, plan.target_spacing_xyz)
        channels = [image_to_grid(channel, source_grid, target_grid) for channel in channels]
    image = np.stack(channels).astype(np.float32, copy=False)
    label = None
    if label_image is not None:
        values = sitk.GetArrayFromImage(label_image)
        if values.size and (values.min() < np.iinfo(np.int16).min or values.max() > np.iinfo(np.int16).max):
            raise MultiModalSegError(
                f"The label of case '{case.case_id}' holds values outside {np.iinfo(np.int16).min}.."
                f"{np.iinfo(np.int16).max}; relabel it with small whole numbers.")
        label = np.rint(values).astype(np.int16) if np.issubdtype(values.dtype, np.floating) \
            else values.astype(np.int16)
        label = label_to_grid(label, source_grid, target_grid)
    prepared = PreparedCase(case_id=case.case_id, image=image, label=label,
                            spacing=tuple(float(s) for s in reversed(target_grid.spacing)),  # type: ignore[arg-type]
                            modalities=tuple(modalities), source=case.source)
    return pad_to_shape(prepared, minimum_shape) if minimum_shape is not None else prepared


def pad_to_shape(case: PreparedCase, minimum_shape: Sequence[int]) -> PreparedCase:
    """The case padded evenly (extra voxel after) to at least ``minimum_shape`` ``(z, y, x)``.

    Returns ``case`` itself when it is already large enough. Images are padded with 0 (the
    normalised mean, or the MR background), the label with 0 (background).
    """
    minimum = tuple(int(v) for v in minimum_shape)
    if len(minimum) != 3:
        raise MultiModalSegError(f"The minimum shape {minimum} must have three sizes (z, y, x).")
    missing = [max(0, want - have) for want, have in zip(minimum, case.shape)]
    if not any(missing):
        return case
    padding = tuple((m // 2, m - m // 2) for m in missing)
    image = np.pad(case.image, ((0, 0), *padding), mode="constant", constant_values=0)
    label = None if case.label is None else np.pad(case.label, padding, mode="constant", constant_values=0)
    total = tuple((a + c, b + d) for (a, b), (c, d) in zip(case.padding, padding))
    return PreparedCase(case_id=case.case_id, image=image, label=label, spacing=case.spacing,
                        modalities=case.modalities, source=case.source, padding=total)


# --------------------------------------------------------------------------- patches


@dataclass
class PatchSamplingConfig:
    """How patches are cut and augmented. Defaults: DTC's LA recipe (see the module docstring)."""

    patch_size: Shape3 = (80, 112, 112)  # (z, y, x); DTC LA: 112x112x80 in (x, y, z); MAML: nnU-Net plans
    foreground_fraction: float = 0.0  # DTC: RandomCrop, no forcing (0.0); nnU-Net/MAML: 0.33
    foreground_rule: str = "per_batch"  # nnU-Net's per-slot rule; "probabilistic": each patch with p = fraction
    class_choice: str = "rare"  # forced patch's class: "rare" (p ~ 1/sqrt(share)); nnU-Net: "uniform"
    rot_flip: bool = True  # DTC RandomRotFlip: rot90 k in 0..3 in the axial (y, x) plane + flip y or x; needs y == x
    mirror_axes: tuple[int, ...] = ()  # nnU-Net/MAML: (0, 1, 2), each flipped with probability 0.5; DTC: none
    intensity_scale: float = 0.0  # each channel x U(1 - s, 1 + s); DTC: none; nnU-Net: brightness 0.75..1.25 at p 0.15
    intensity_shift: float = 0.0  # each channel + U(-t, t) (normalised units); neither reference
    locations_per_class: int = 10_000  # nnU-Net stores 10 000 random voxels per class for foreground sampling
    # Spatial and appearance augmentation (nnU-Net's rotation / scaling / gamma / noise, simplified;
    # neither reference's default recipe here: for tiny data sets such as one template volume).
    rotation_degrees: float = 0.0  # rotate about each axis by U(-r, r) degrees (in mm space); nnU-Net: 30 at p 0.2
    scale_range: float = 0.0  # zoom by U(1 - s, 1 + s) (the same on every axis); nnU-Net: 0.7..1.4 at p 0.2
    spatial_probability: float = 1.0  # chance that a patch is rotated/scaled when either of the above is set
    gamma_range: float = 0.0  # per channel x -> x ** gamma on [0, 1]-rescaled non-zero voxels, log-uniform 1/(1+g)..1+g
    noise_std: float = 0.0  # additive Gaussian noise, sigma ~ U(0, noise_std) per patch (normalised units)

    @classmethod
    def for_dtc(cls, patch_size: Sequence[int] = (80, 112, 112), **overrides: Any) -> PatchSamplingConfig:
        """DTC's LA recipe: random crops, RandomRotFlip; ``overrides`` replace any field."""
        recipe: dict[str, Any] = {"foreground_fraction": 0.0, "rot_flip": True, "mirror_axes": ()}
        return cls(patch_size=tuple(int(v) for v in patch_size), **{**recipe, **overrides})  # type: ignore[arg-type]

    @classmethod
    def for_maml(cls, patch_size: Sequence[int], **overrides: Any) -> PatchSamplingConfig:
        """MAML's nnU-Net recipe: 33 % foreground patches, mirroring along every axis; ``overrides`` replace any field."""
        recipe: dict[str, Any] = {"foreground_fraction": 0.33, "rot_flip": False, "mirror_axes": (0, 1, 2)}
        return cls(patch_size=tuple(int(v) for v in patch_size), **{**recipe, **overrides})  # type: ignore[arg-type]

    def validate(self) -> None:
        """Refuse settings that cannot sample, with a sentence that says what to change."""
        size = tuple(self.patch_size)
        if len(size) != 3 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in size):
            raise MultiModalSegError(f"The patch size {size} must be three positive whole numbers (z, y, x).")
        self.patch_size = tuple(int(v) for v in size)  # type: ignore[assignment]
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise MultiModalSegError(
                f"The foreground fraction {self.foreground_fraction} must lie between 0 and 1.")
        if self.foreground_rule not in FOREGROUND_RULES:
            raise MultiModalSegError(
                f"Unknown foreground rule '{self.foreground_rule}'; use one of {', '.join(FOREGROUND_RULES)}.")
        if self.class_choice not in CLASS_CHOICES:
            raise MultiModalSegError(
                f"Unknown class choice '{self.class_choice}'; use one of {', '.join(CLASS_CHOICES)}.")
        if self.rot_flip and self.patch_size[1] != self.patch_size[2]:
            raise MultiModalSegError(
                f"Rotating patches by 90 degrees in the axial plane needs equal y and x patch sizes, not "
                f"{self.patch_size[1]} and {self.patch_size[2]}; make them equal or turn rot_flip off.")
        if any(axis not in (0, 1, 2) for axis in self.mirror_axes):
            raise MultiModalSegError(f"The mirror axes {self.mirror_axes} must be among 0 (z), 1 (y), 2 (x).")
        if not 0.0 <= self.intensity_scale < 1.0 or self.intensity_shift < 0.0:
            raise MultiModalSegError(
                "The intensity jitter needs 0 <= intensity_scale < 1 and intensity_shift >= 0.")
        if self.locations_per_class < 1:
            raise MultiModalSegError("locations_per_class must be at least 1.")
        if not 0.0 <= self.rotation_degrees <= 180.0 or not 0.0 <= self.scale_range < 1.0:
            raise MultiModalSegError("The spatial augmentation needs 0 <= rotation_degrees <= 180 and 0 <= scale_range < 1.")
        if not 0.0 <= self.spatial_probability <= 1.0:
            raise MultiModalSegError(f"spatial_probability {self.spatial_probability} must lie between 0 and 1.")
        if self.gamma_range < 0.0 or self.noise_std < 0.0:
            raise MultiModalSegError("gamma_range and noise_std must be 0 (off) or positive.")

    @property
    def spatial(self) -> bool:
        """Whether patches may be rotated or scaled."""
        return self.rotation_degrees > 0.0 or self.scale_range > 0.0


def class_index_lookup(label_values: Sequence[int]) -> dict[int, int]:
    """Label value -> class index: background 0 -> 0, ``label_values[i]`` -> ``i + 1``.

    ``label_values`` are the foreground values in class order (a manifest's ``labels``),
    e.g. BraTS ``[1, 2, 4]`` gives ``{0: 0, 1: 1, 2: 2, 4: 3}``.
    """
    values = [int(v) for v in label_values]
    if not values:
        raise MultiModalSegError("No foreground labels were given; name the label values the model segments.")
    if 0 in values:
        raise MultiModalSegError("The label value 0 is the background; list only foreground label values.")
    if len(set(values)) != len(values):
        raise MultiModalSegError(f"The label values {values} repeat a value; list each label once.")
    lookup = {0: 0}
    lookup.update({value: index + 1 for index, value in enumerate(values)})
    return lookup


def _to_class_indices(label: np.ndarray, lookup: dict[int, int], case_id: str) -> np.ndarray:
    """Map a label map's values to class indices (uint8), refusing values the model lacks."""
    present = np.unique(label)
    stray = [int(v) for v in present if int(v) not in lookup]
    if stray:
        raise MultiModalSegError(
            f"The label of case '{case_id}' holds the value(s) {stray}, which are not among the model's labels "
            f"{sorted(set(lookup) - {0})}; relabel the case or add the labels to the model.")
    indices = np.zeros(label.shape, dtype=np.uint8)
    for value, index in lookup.items():
        if index:
            indices[label == value] = index
    return indices


def _random_start(rng: np.random.Generator, shape: Shape3, patch: Shape3) -> tuple[int, ...]:
    return tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch))


def _start_around(voxel: np.ndarray, shape: Shape3, patch: Shape3) -> tuple[int, ...]:
    """Start of the patch centred on ``voxel``, shifted to lie inside the volume (it still holds the voxel)."""
    return tuple(int(min(max(int(v) - p // 2, 0), s - p)) for v, s, p in zip(voxel, shape, patch))


class PatchSampler:
    """Random, augmented patches from prepared cases, with labels as class indices.

    A patch comes from a uniformly drawn case; a labeled case gives a foreground-centred
    patch with probability ``config.foreground_fraction`` (a random foreground class present
    in the case, then a random voxel of it, as nnU-Net), else a uniformly placed one. Then
    the augmentations of ``config`` run in DTC's order: crop (optionally through a random
    rotation and zoom), rot90 + flip, mirroring, intensity jitter, then gamma and noise.
    Image and label always get the same geometric transform.

    Cases smaller than the patch are padded (:func:`pad_to_shape`). Label values are mapped
    to class indices once, at construction, and foreground voxel positions (at most
    ``config.locations_per_class`` per class, drawn with ``seed``) are stored so forcing
    foreground costs nothing per patch. Construct before starting worker processes so they
    share these arrays.
    """

    def __init__(self, cases: Sequence[PreparedCase], config: PatchSamplingConfig, label_values: Sequence[int],
                 seed: int = 0) -> None:
        config.validate()
        if not cases:
            raise MultiModalSegError("There are no cases to sample patches from.")
        self.config = config
        self.label_values = [int(v) for v in label_values]
        self.lookup = class_index_lookup(self.label_values)
        self.rng = np.random.default_rng(seed)
        channel_counts = {case.image.shape[0] for case in cases}
        if len(channel_counts) != 1:
            raise MultiModalSegError(
                f"The prepared cases have different numbers of modalities {sorted(channel_counts)}; prepare every "
                "case with the model's modalities.")
        self.cases = [pad_to_shape(case, config.patch_size) for case in cases]
        self.class_indices: list[np.ndarray | None] = []
        self.foreground_locations: list[list[np.ndarray]] = []
        location_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x10CA7E]))
        for case in self.cases:
            if case.label is None:
                self.class_indices.append(None)
                self.foreground_locations.append([])
                continue
            indices = _to_class_indices(case.label, self.lookup, case.case_id)
            self.class_indices.append(indices)
            per_class = []
            for class_index in range(1, self.num_classes):
                voxels = np.argwhere(indices == class_index).astype(np.int32)
                if len(voxels) > config.locations_per_class:
                    chosen = location_rng.choice(len(voxels), config.locations_per_class, replace=False)
                    voxels = voxels[np.sort(chosen)]
                per_class.append(voxels)
            self.foreground_locations.append(per_class)
        counts = np.zeros(self.num_classes, dtype=np.float64)
        for indices in self.class_indices:
            if indices is not None:
                counts += np.bincount(indices.ravel(), minlength=self.num_classes)[: self.num_classes]
        foreground = counts[1:].sum()
        #: each foreground class's share of the training set's foreground voxels (index 0: class 1)
        self.class_shares = counts[1:] / foreground if foreground > 0 else np.zeros(self.num_classes - 1)

    @property
    def num_classes(self) -> int:
        """Classes including background (``len(label_values) + 1``)."""
        return len(self.label_values) + 1

    @property
    def labeled_indices(self) -> list[int]:
        return [i for i, case in enumerate(self.cases) if case.is_labeled]

    @property
    def unlabeled_indices(self) -> list[int]:
        return [i for i, case in enumerate(self.cases) if not case.is_labeled]

    def class_probabilities(self, present: Sequence[int]) -> np.ndarray:
        """Probability of centring a forced patch on each of the ``present`` classes (0-based foreground index)."""
        if self.config.class_choice == "uniform":
            return np.full(len(present), 1.0 / len(present))
        shares = np.asarray([max(float(self.class_shares[c]), 1e-6) for c in present])
        weights = 1.0 / np.sqrt(shares)
        return weights / weights.sum()

    def _choose_class(self, present: list[int], rng: np.random.Generator) -> int:
        if len(present) == 1:
            return present[0]
        if self.config.class_choice == "uniform":  # nnU-Net's draw, kept bit-identical
            return present[int(rng.integers(len(present)))]
        return present[int(rng.choice(len(present), p=self.class_probabilities(present)))]

    def forced_slots(self, labeled_batch_size: int, rng: np.random.Generator) -> list[bool]:
        """Which labeled slots of one batch are centred on foreground (see the module docstring)."""
        fraction = self.config.foreground_fraction
        if self.config.foreground_rule == "per_batch" and labeled_batch_size >= 2:
            first_forced = round(labeled_batch_size * (1.0 - fraction))
            return [slot >= first_forced for slot in range(labeled_batch_size)]
        return [bool(rng.random() < fraction) for _ in range(labeled_batch_size)]

    def sample(self, rng: np.random.Generator | None = None, force_foreground: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """One patch from a uniformly drawn case; see :meth:`sample_case`."""
        rng = rng if rng is not None else self.rng
        return self.sample_case(int(rng.integers(len(self.cases))), rng, force_foreground)

    def sample_case(self, case_index: int, rng: np.random.Generator | None = None,
                    force_foreground: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """One augmented patch of case ``case_index``.

        Args:
            case_index: index into ``self.cases``.
            rng: the generator to draw from; default the sampler's own (seeded with ``seed``).
            force_foreground: True centres the patch on foreground, False places it
                uniformly, None draws the choice with ``config.foreground_fraction``.
                Ignored for an unlabeled case (always uniform).

        Returns:
            ``(image [M, *patch] float32, class_indices [*patch] int64)``; the class
            indices are None for an unlabeled case.
        """
        rng = rng if rng is not None else self.rng
        config = self.config
        case = self.cases[case_index]
        indices = self.class_indices[case_index]
        patch = config.patch_size
        if force_foreground is None:
            force_foreground = bool(rng.random() < config.foreground_fraction) if indices is not None else False
        eligible = [c for c, voxels in enumerate(self.foreground_locations[case_index]) if len(voxels)]
        if force_foreground and eligible:
            voxels = self.foreground_locations[case_index][self._choose_class(eligible, rng)]
            start = _start_around(voxels[int(rng.integers(len(voxels)))], case.shape, patch)
        else:
            start = _random_start(rng, case.shape, patch)
        if config.spatial and rng.random() < config.spatial_probability:
            image, label = _rotated_scaled_patch(case, indices, start, patch, config, rng)
        else:
            window = tuple(slice(s, s + p) for s, p in zip(start, patch))
            image = case.image[(slice(None), *window)]
            label = indices[window] if indices is not None else None

        if config.rot_flip:  # DTC RandomRotFlip
            k = int(rng.integers(0, 4))
            flip_axis = -2 + int(rng.integers(0, 2))  # y or x
            image = np.flip(np.rot90(image, k, axes=(-2, -1)), axis=flip_axis)
            if label is not None:
                label = np.flip(np.rot90(label, k, axes=(-2, -1)), axis=flip_axis)
        for axis in config.mirror_axes:  # nnU-Net mirroring
            if rng.random() < 0.5:
                image = np.flip(image, axis=axis - 3)
                if label is not None:
                    label = np.flip(label, axis=axis - 3)
        image = np.array(image, dtype=np.float32, order="C")
        if config.intensity_scale > 0:
            scale = rng.uniform(1 - config.intensity_scale, 1 + config.intensity_scale, size=image.shape[0])
            image *= scale.astype(np.float32)[:, None, None, None]
        if config.intensity_shift > 0:
            shift = rng.uniform(-config.intensity_shift, config.intensity_shift, size=image.shape[0])
            image += shift.astype(np.float32)[:, None, None, None]
        if config.gamma_range > 0:
            _random_gamma(image, config.gamma_range, rng)
        if config.noise_std > 0:
            sigma = rng.uniform(0.0, config.noise_std)
            image += rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
        return image, (None if label is None else np.array(label, dtype=np.int64, order="C"))


def _rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation about the z, y and x axes (radians), composed in that order, in (z, y, x) coordinates."""
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        turn = np.eye(3)
        turn[i, i], turn[i, j], turn[j, i], turn[j, j] = c, -s, s, c
        matrix = turn @ matrix
    return matrix


def _rotated_scaled_patch(case: PreparedCase, indices: np.ndarray | None, start: Sequence[int], patch: Shape3,
                          config: PatchSamplingConfig, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """The patch centred where the plain crop would be, read through a random rotation and zoom.

    The transform acts in millimetres (the case's spacing), so it stays a rotation on
    anisotropic grids. Only the patch's voxels are interpolated (linear for images, nearest
    for labels); what falls outside the volume is 0 (the MR background / the normalised mean)
    and background for the label.
    """
    from scipy import ndimage

    angles = np.radians(rng.uniform(-config.rotation_degrees, config.rotation_degrees, size=3))
    zoom = rng.uniform(1.0 - config.scale_range, 1.0 + config.scale_range)
    spacing = np.asarray(case.spacing, dtype=np.float64)
    # output voxel -> mm (centred) -> rotate and zoom -> input voxel
    matrix = np.diag(1.0 / spacing) @ _rotation_matrix(angles) @ np.diag(spacing) / zoom
    out_center = (np.asarray(patch, dtype=np.float64) - 1.0) / 2.0
    in_center = np.asarray(start, dtype=np.float64) + out_center
    offset = in_center - matrix @ out_center
    image = np.stack([ndimage.affine_transform(channel, matrix, offset, output_shape=patch, order=1,
                                               mode="constant", cval=0.0) for channel in case.image])
    label = None
    if indices is not None:
        label = ndimage.affine_transform(indices, matrix, offset, output_shape=patch, order=0, mode="constant",
                                         cval=0)
    return image.astype(np.float32, copy=False), label


def _random_gamma(image: np.ndarray, gamma_range: float, rng: np.random.Generator) -> None:
    """Per channel, in place: non-zero voxels rescaled to [0, 1], raised to a random gamma, scaled back."""
    for channel in image:
        mask = channel != 0
        if not mask.any():
            continue
        values = channel[mask]
        low, high = float(values.min()), float(values.max())
        if high - low < 1e-6:
            continue
        gamma = float(np.exp(rng.uniform(-np.log1p(gamma_range), np.log1p(gamma_range))))
        channel[mask] = (((values - low) / (high - low)) ** gamma * (high - low) + low).astype(np.float32)


# --------------------------------------------------------------------------- batches


def batch_seed(seed: int, rank: int = 0, index: int = 0) -> np.random.SeedSequence:
    """The seed of batch ``index`` of rank ``rank``: ``SeedSequence([seed, rank, index])``."""
    return np.random.SeedSequence([int(seed), int(rank), int(index)])


class _TwoStreamBatches(IterableDataset):
    """Endless batches for one rank from ``start_batch`` on; worker ``w`` of ``W`` makes batches ``w, w + W, ...``."""

    def __init__(self, sampler: PatchSampler, batch_size: int, labeled_batch_size: int, with_sdf: bool,
                 seed: int, rank: int, start_batch: int = 0) -> None:
        super().__init__()
        self.sampler = sampler
        self.batch_size = batch_size
        self.labeled_batch_size = labeled_batch_size
        self.with_sdf = with_sdf
        self.seed = seed
        self.rank = rank
        self.start_batch = start_batch
        self.labeled = sampler.labeled_indices
        self.unlabeled = sampler.unlabeled_indices

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker_id, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        sdf_threads = 1 if info is not None else None
        # the DataLoader takes batches from its workers in turn, so the order stays 0, 1, 2, ...
        index = self.start_batch + worker_id
        while True:
            yield self.make_batch(np.random.default_rng(batch_seed(self.seed, self.rank, index)), sdf_threads)
            index += workers

    def make_batch(self, rng: np.random.Generator, sdf_threads: int | None = None) -> dict[str, Any]:
        """Labeled patches first, then unlabeled ones, as DTC's TwoStreamBatchSampler orders them."""
        images, labels, case_ids = [], [], []
        forced = self.sampler.forced_slots(self.labeled_batch_size, rng)
        for slot in range(self.batch_size):
            pool = self.labeled if slot < self.labeled_batch_size else self.unlabeled
            case_index = pool[int(rng.integers(len(pool)))]
            image, label = self.sampler.sample_case(case_index, rng,
                                                    forced[slot] if slot < self.labeled_batch_size else False)
            images.append(image)
            case_ids.append(self.sampler.cases[case_index].case_id)
            if slot < self.labeled_batch_size:
                labels.append(label)
        patch = self.sampler.config.patch_size
        label_array = np.stack(labels) if labels else np.zeros((0, *patch), dtype=np.int64)
        batch: dict[str, Any] = {
            "image": torch.from_numpy(np.stack(images)),
            "label": torch.from_numpy(label_array),
            "labeled_batch_size": self.labeled_batch_size,
            "case_ids": case_ids,
        }
        if self.with_sdf:
            foreground_classes = self.sampler.num_classes - 1
            sdf = np.zeros((len(labels), foreground_classes, *patch), dtype=np.float32)
            class_numbers = np.arange(1, foreground_classes + 1).reshape(-1, 1, 1, 1)
            for index, label in enumerate(labels):
                sdf[index] = signed_distance_map(label[None] == class_numbers, threads=sdf_threads)
            batch["sdf"] = torch.from_numpy(sdf)
        return batch


class TwoStreamBatchLoader:
    """An endless iterator of training batches mixing labeled and unlabeled patches.

    Each batch is a dict::

        {"image": Tensor[B, M, *patch] float32,       # labeled patches first
         "label": Tensor[B_l, *patch] int64,           # class indices 0..K
         "sdf": Tensor[B_l, K, *patch] float32,        # only with with_sdf=True
         "labeled_batch_size": B_l,
         "case_ids": list[str]}                        # which case each patch came from

    ``B_l = labeled_batch_size`` patches come from labeled cases and the rest from unlabeled
    ones (DTC's ``TwoStreamBatchSampler``: 2 + 2 of 4); supervised MAML uses
    ``labeled_batch_size = batch_size`` (the default). ``sdf`` holds, per labeled patch and
    foreground class k, :func:`~MultiModalSegLib.levelset.signed_distance_map` of
    ``label == k`` in voxel units, as DTC's ``compute_sdf`` (the reference ignores spacing).

    Batches are drawn in ``num_workers`` DataLoader worker processes (0: in this process);
    batch ``i`` always comes from :func:`batch_seed(seed, rank, i) <batch_seed>`, so the
    sequence is fixed by ``seed`` and ``rank`` whatever ``num_workers`` is, and
    ``start_batch=k`` continues it at batch ``k`` (a resumed training run). Under
    DistributedDataParallel give every process its ``rank``; each draws a different stream,
    and ``batch_size`` is per process.
    """

    def __init__(self, cases: Sequence[PreparedCase], config: PatchSamplingConfig, label_values: Sequence[int],
                 batch_size: int, labeled_batch_size: int | None = None, *, with_sdf: bool = False, seed: int = 0,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1, pin_memory: bool = False,
                 prefetch_factor: int = 2, multiprocessing_context: str | None = None, start_batch: int = 0) -> None:
        if batch_size < 1:
            raise MultiModalSegError(f"The batch size must be at least 1, not {batch_size}.")
        labeled_batch_size = batch_size if labeled_batch_size is None else int(labeled_batch_size)
        if not 0 <= labeled_batch_size <= batch_size:
            raise MultiModalSegError(
                f"The labeled batch size {labeled_batch_size} must lie between 0 and the batch size {batch_size}.")
        if not 0 <= rank < world_size:
            raise MultiModalSegError(f"The rank {rank} must lie in 0..{world_size - 1} (world size {world_size}).")
        if num_workers < 0:
            raise MultiModalSegError(f"The number of workers must be 0 or more, not {num_workers}.")
        self.sampler = PatchSampler(cases, config, label_values, seed)
        if labeled_batch_size > 0 and not self.sampler.labeled_indices:
            raise MultiModalSegError(
                "No case has a label, but every batch needs labeled patches; add labeled cases.")
        if labeled_batch_size < batch_size and not self.sampler.unlabeled_indices:
            raise MultiModalSegError(
                f"Batches of {batch_size} with {labeled_batch_size} labeled need unlabeled cases, and there are none; "
                "add unlabeled cases or make the labeled batch size equal to the batch size.")
        self.batch_size = batch_size
        self.labeled_batch_size = labeled_batch_size
        self.with_sdf = with_sdf
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.dataset = _TwoStreamBatches(self.sampler, batch_size, labeled_batch_size, with_sdf, seed, rank,
                                         start_batch)
        # An own generator for the DataLoader's worker base seed: without one, starting the
        # iterator draws from torch's global RNG, which a resumed run would then draw at another
        # iteration than the uninterrupted one (shifting DTC's dropout masks).
        self.loader = DataLoader(
            self.dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(int(seed) % 2**63))
        self._iterator: Iterator[dict[str, Any]] | None = None

    def __iter__(self) -> TwoStreamBatchLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = iter(self.loader)
        return next(self._iterator)

    def close(self) -> None:
        """Stop the worker processes (a later ``next`` starts the stream again from the seed)."""
        self._iterator = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
