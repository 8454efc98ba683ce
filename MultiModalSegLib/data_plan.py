"""The data plan: how a model sees its data, computed once from the training set and kept with the weights.

A network only works on images that look like its training patches: the same voxel size, the
same intensity scale. nnU-Net makes this explicit as a *plan* (its "fingerprint" and "plans"
files); MultiModalSeg stores the same decisions in every model package's manifest
(``manifest["plan"]``), so training, fine-tuning and inference all work in one space:

* ``target_spacing`` (array order ``z, y, x``, mm): nnU-Net's rule. The median spacing of the
  training cases per axis; when the coarsest axis is more than 3x coarser than the others *and*
  has fewer than a third of their voxels (thick-slice CT), its target is the 10th percentile of
  that axis' spacings instead (at least the largest other spacing), so thin-slice cases are not
  thrown away to the median's thick slices.
* ``normalization`` per modality. CT (nnU-Net's ``CTNormalization``): clip to the 0.5 and 99.5
  percentiles of the labelled foreground voxels of the whole training set, then subtract the
  mean and divide by the standard deviation of those voxels. Fixed numbers, so the liver-tumour
  contrast stays what it was in training (per-image body statistics shrink it 3-7x). MR: a
  z-score per image over its non-zero voxels (MR has no absolute scale), as nnU-Net's
  ``ZScoreNormalization`` with ``use_mask_for_norm`` for skull-stripped data.
* ``patch_size`` (array order), and ``postprocessing``: the labels whose largest connected
  component alone is kept, chosen on the validation cases after training
  (:mod:`MultiModalSegLib.postprocessing`).

``predict`` resamples every input into the plan's space (target spacing) and the outputs back
onto the reference image's grid; a package without a plan (format of the v1 bundled models)
runs on the input grid, with a warning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "FOREGROUND_SAMPLES_PER_CASE",
    "DataPlan",
    "IntensityStatistics",
    "foreground_intensity_statistics",
    "plan_target_spacing",
]

#: nnU-Net's anisotropy threshold: an axis more than 3x coarser than the others is "thick".
ANISOTROPY_THRESHOLD = 3.0
#: Foreground voxels drawn per case and modality for the CT statistics (nnU-Net v2: 10 000).
FOREGROUND_SAMPLES_PER_CASE = 10_000
#: The percentiles of the foreground intensities a CT modality is clipped to (nnU-Net).
CT_CLIP_PERCENTILES = (0.5, 99.5)


def plan_target_spacing(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]],
                        anisotropy_threshold: float = ANISOTROPY_THRESHOLD) -> tuple[float, float, float]:
    """nnU-Net's full-resolution target spacing from the training cases' spacings and shapes.

    Both in array order ``(z, y, x)``. The target is the per-axis median spacing, except for
    strongly anisotropic data: when the coarsest median axis is more than ``anisotropy_threshold``
    times coarser than the other axes *and* the median number of voxels along it times the
    threshold is below the other axes' median voxel counts, that axis
    gets the 10th percentile of its spacings (never finer than the largest other target spacing),
    which keeps the resolution of the thin-slice cases instead of blurring everything to the
    median's thick slices.
    """
    spacing_array = np.asarray(spacings, dtype=np.float64)
    shape_array = np.asarray(shapes, dtype=np.float64)
    if spacing_array.ndim != 2 or spacing_array.shape[1] != 3 or len(spacing_array) == 0:
        raise MultiModalSegError("Planning needs at least one training case with a 3D spacing.")
    if not np.all(np.isfinite(spacing_array)) or np.any(spacing_array <= 0):
        raise MultiModalSegError("A training case has a zero, negative or undefined voxel spacing; fix its header.")
    target = np.percentile(spacing_array, 50, axis=0)
    median_shape = np.percentile(shape_array, 50, axis=0)
    worst = int(np.argmax(target))
    others = [axis for axis in range(3) if axis != worst]
    anisotropic_spacing = target[worst] > anisotropy_threshold * max(target[axis] for axis in others)
    anisotropic_voxels = median_shape[worst] * anisotropy_threshold < min(median_shape[axis] for axis in others)
    if anisotropic_spacing and anisotropic_voxels:
        thin = float(np.percentile(spacing_array[:, worst], 10))
        largest_other = max(float(target[axis]) for axis in others)
        target[worst] = thin if thin >= largest_other else largest_other + 1e-5
    return tuple(round(float(v), 6) for v in target)  # type: ignore[return-value]


@dataclass
class IntensityStatistics:
    """Foreground intensity statistics of one modality over the training set (nnU-Net's fingerprint)."""

    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float
    voxels: int

    def to_settings(self) -> dict[str, Any]:
        """The ``NormalizationSettings`` values that apply these statistics (CT normalisation)."""
        return {"clip": [self.percentile_00_5, self.percentile_99_5], "mean": self.mean, "std": self.std}


def foreground_intensity_statistics(samples: Sequence[np.ndarray]) -> IntensityStatistics:
    """Mean, std and the 0.5 / 99.5 percentiles of the pooled foreground samples of every case."""
    values = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in samples]) if samples else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise MultiModalSegError(
            "No labelled foreground voxel was found to compute the CT intensity statistics; training needs labeled "
            "cases whose label maps are not empty.")
    low, high = np.percentile(values, CT_CLIP_PERCENTILES)
    return IntensityStatistics(mean=round(float(values.mean()), 4), std=round(max(float(values.std()), 1e-8), 4),
                               percentile_00_5=round(float(low), 4), percentile_99_5=round(float(high), 4),
                               voxels=int(values.size))


def sample_foreground(array: np.ndarray, foreground: np.ndarray, rng: np.random.Generator,
                      count: int = FOREGROUND_SAMPLES_PER_CASE) -> np.ndarray:
    """Up to ``count`` intensities of ``array`` where ``foreground`` is true, drawn without replacement."""
    values = np.asarray(array)[np.asarray(foreground, dtype=bool)]
    if values.size <= count:
        return values.astype(np.float64)
    return values[rng.choice(values.size, count, replace=False)].astype(np.float64)


@dataclass
class DataPlan:
    """A model's data plan (see the module docstring); stored as ``manifest["plan"]``.

    ``normalization`` maps each modality to ``{"scheme": "ct" | "mr" | "none", ...settings}``
    where the settings are :class:`~MultiModalSegLib.intensity_normalization.NormalizationSettings`
    fields (``clip``, ``mean``, ``std`` for CT). ``postprocessing`` is
    ``{"largest_component": [label names], "evidence": {...}}`` (evidence: the validation Dice
    with and without it). ``fingerprint`` records what the plan was computed
    from (case count, median spacing and shape, per-modality statistics), for the model card.
    """

    target_spacing: tuple[float, float, float]
    normalization: dict[str, dict[str, Any]]
    patch_size: tuple[int, int, int]
    postprocessing: dict[str, Any] = field(default_factory=lambda: {"largest_component": []})
    fingerprint: dict[str, Any] = field(default_factory=dict)
    #: axes (0 z, 1 y, 2 x) the training augmentation mirrored: test-time mirroring may use them
    mirror_axes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.target_spacing)
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise MultiModalSegError(
                f"The plan's target spacing {list(self.target_spacing)} must be three positive numbers (z, y, x mm); "
                "fix the model package's manifest.json.")
        self.target_spacing = spacing  # type: ignore[assignment]
        self.patch_size = tuple(int(v) for v in self.patch_size)  # type: ignore[assignment]
        for name, entry in self.normalization.items():
            if not isinstance(entry, Mapping) or entry.get("scheme") not in ("ct", "mr", "none"):
                raise MultiModalSegError(
                    f"The plan's normalisation of '{name}' must name a scheme ct, mr or none; fix manifest.json.")
        if not isinstance(self.postprocessing, Mapping):
            raise MultiModalSegError("The plan's postprocessing must be a JSON object; fix manifest.json.")
        self.postprocessing = {**self.postprocessing,
                               "largest_component": [str(v) for v in self.postprocessing.get("largest_component", [])]}
        if self.mirror_axes is not None:
            self.mirror_axes = tuple(int(a) for a in self.mirror_axes if int(a) in (0, 1, 2))

    @property
    def target_spacing_xyz(self) -> tuple[float, float, float]:
        """The target spacing in SimpleITK's ``(x, y, z)`` order."""
        return tuple(reversed(self.target_spacing))  # type: ignore[return-value]

    def scheme(self, modality: str) -> str:
        return str(self.normalization[modality]["scheme"])

    def settings(self, modality: str) -> dict[str, Any]:
        """The ``NormalizationSettings`` values of ``modality`` (everything but the scheme)."""
        return {k: v for k, v in self.normalization[modality].items() if k != "scheme"}

    @property
    def largest_component_labels(self) -> list[str]:
        return list(self.postprocessing.get("largest_component", []))

    def to_dict(self) -> dict[str, Any]:
        return {"target_spacing": list(self.target_spacing), "normalization": self.normalization,
                "patch_size": list(self.patch_size), "postprocessing": self.postprocessing,
                "mirror_axes": list(self.mirror_axes) if self.mirror_axes is not None else None,
                "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> DataPlan:
        if not isinstance(value, Mapping):
            raise MultiModalSegError("The model package's plan must be a JSON object; fix its manifest.json.")
        try:
            return cls(target_spacing=tuple(value["target_spacing"]), normalization=dict(value["normalization"]),
                       patch_size=tuple(value["patch_size"]),
                       postprocessing=dict(value.get("postprocessing") or {"largest_component": []}),
                       fingerprint=dict(value.get("fingerprint") or {}),
                       mirror_axes=value.get("mirror_axes"))
        except (KeyError, TypeError, ValueError) as error:
            raise MultiModalSegError(
                f"The model package's plan is incomplete or malformed ({error!r}); it needs target_spacing, "
                "normalization and patch_size. Retrain or reinstall the package.") from error

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> DataPlan | None:
        """The package's plan, or None for a package made before plans existed (it runs on the input grid)."""
        value = manifest.get("plan")
        return None if value is None else cls.from_dict(value)

    def digest(self) -> str:
        """A short hash of what changes the prepared arrays (spacing and normalisation)."""
        text = json.dumps({"s": self.target_spacing, "n": self.normalization}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def compute_plan(cases: Sequence[Any], modalities: Sequence[str], schemes: Mapping[str, str], reference: str,
                 patch_size: Sequence[int], seed: int = 0) -> DataPlan:
    """The plan of a training set: target spacing from every case, CT statistics from the labelled ones.

    ``cases`` are :class:`~MultiModalSegLib.datasets.Case` objects (their images are read);
    spacings and shapes are the reference modality's, the grid everything is aligned to. CT
    statistics pool up to :data:`FOREGROUND_SAMPLES_PER_CASE` foreground voxels per labelled case
    (label > 0 on the reference grid, each modality aligned to it), drawn with ``seed``.
    """
    import SimpleITK as sitk

    from MultiModalSegLib.preprocessing import align_to_reference

    if not cases:
        raise MultiModalSegError("Planning needs at least one training case.")
    spacings, shapes = [], []
    samples: dict[str, list[np.ndarray]] = {name: [] for name in modalities if schemes[name] == "ct"}
    rng = np.random.default_rng(seed)
    for case in cases:
        image = case.images[reference]
        spacings.append(tuple(reversed(image.GetSpacing())))
        shapes.append(tuple(reversed(image.GetSize())))
        if not samples or case.label is None:
            continue
        names = [reference] + [name for name in samples if name != reference]
        aligned, label, _ = align_to_reference({name: case.images[name] for name in names}, reference,
                                               label=case.label)
        foreground = sitk.GetArrayViewFromImage(label) > 0
        if not foreground.any():
            continue
        for name in samples:
            samples[name].append(sample_foreground(sitk.GetArrayViewFromImage(aligned[name]), foreground, rng))
    target = plan_target_spacing(spacings, shapes)
    normalization: dict[str, dict[str, Any]] = {}
    statistics: dict[str, Any] = {}
    for name in modalities:
        if schemes[name] == "ct":
            stats = foreground_intensity_statistics(samples[name])
            normalization[name] = {"scheme": "ct", **stats.to_settings()}
            statistics[name] = {"mean": stats.mean, "std": stats.std, "percentile_00_5": stats.percentile_00_5,
                                "percentile_99_5": stats.percentile_99_5, "foreground_voxels_sampled": stats.voxels}
        else:
            normalization[name] = {"scheme": schemes[name]}
    fingerprint = {
        "cases": len(cases), "labelled_cases": sum(case.label is not None for case in cases),
        "median_spacing": [round(float(v), 4) for v in np.median(np.asarray(spacings), axis=0)],
        "median_shape": [int(v) for v in np.median(np.asarray(shapes), axis=0)],
        "spacing_range": [[round(float(v), 4) for v in np.min(spacings, axis=0)],
                          [round(float(v), 4) for v in np.max(spacings, axis=0)]],
        "intensity": statistics, "reference_modality": reference,
        "rule": "nnU-Net: median spacing; a >3x coarser axis with <1/3 of the voxels takes its 10th percentile",
    }
    return DataPlan(target_spacing=target, normalization=normalization, patch_size=tuple(patch_size),
                    fingerprint=fingerprint)

