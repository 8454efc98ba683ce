"""Put every modality of a case on one voxel grid, and put results back on it.

MAML stacks the modalities as channels of one tensor, so the voxel ``(z, y, x)`` of each
channel must be the same point of the patient. The phases of a CT or the sequences of an
MR study rarely share a grid (different slice thickness, field of view, oblique MR
planes), so :func:`align_to_reference` resamples each modality onto the reference
modality's grid in physical (LPS) space, the way the MAML and DTC data sets were
co-registered before training. It trusts the scanner geometry (no registration): images
of one study share the patient coordinate system. It refuses images whose physical
extents barely overlap, which means files from different studies.

Images already on the reference grid pass through without interpolation. Outputs of the
network go back onto the reference image with :func:`restore_to_reference`, which copies
origin, spacing and direction exactly, so they overlay the input in Slicer.

Intensity normalisation lives in :mod:`MultiModalSegLib.intensity_normalization` and is
re-exported here (``normalize_intensity``, ``NormalizationSettings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.intensity_normalization import (
    NORMALIZATION_SCHEMES,
    NormalizationSettings,
    normalize_intensity,
)

__all__ = [
    "MINIMUM_OVERLAP_FRACTION",
    "NORMALIZATION_SCHEMES",
    "NormalizationSettings",
    "align_to_reference",
    "grid_differences",
    "normalize_intensity",
    "overlap_fraction",
    "physical_bounding_box",
    "resample_like",
    "resample_to_spacing",
    "restore_to_reference",
]

#: A modality must cover at least this fraction of the reference's physical bounding box.
#: Phases or sequences of one study overlap almost entirely; 10 % leaves room for a
#: partial-coverage MR sequence while catching files of different patients or studies.
MINIMUM_OVERLAP_FRACTION = 0.10
#: Spacings equal when they differ by less than this fraction.
SPACING_RELATIVE_TOLERANCE = 1e-4
#: Direction cosines (in [-1, 1]) equal when every element differs by less than this.
DIRECTION_TOLERANCE = 1e-4
#: Origins equal when they differ by less than this many reference voxels along each axis.
#: NIfTI stores the origin in float32 (about 6e-5 mm at 500 mm), so the same grid read from
#: DICOM and from NIfTI must count as equal.
ORIGIN_TOLERANCE_VOXELS = 1e-3

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


def _interpolator(name: str) -> int:
    try:
        return _INTERPOLATORS[name]
    except KeyError:
        raise MultiModalSegError(
            f"Unknown interpolator '{name}'; use one of {', '.join(_INTERPOLATORS)}.") from None


def grid_differences(image: sitk.Image, reference: sitk.Image) -> list[str]:
    """Which of ``size``, ``spacing``, ``origin``, ``direction`` differ from ``reference``'s grid.

    An empty list means the voxel grids coincide within the module's tolerances, so the
    image can be used voxel for voxel with the reference.
    """
    differences: list[str] = []
    if image.GetSize() != reference.GetSize():
        differences.append("size")
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    reference_spacing = np.asarray(reference.GetSpacing(), dtype=float)
    if spacing.shape != reference_spacing.shape or np.any(
            np.abs(spacing - reference_spacing) > SPACING_RELATIVE_TOLERANCE * np.abs(reference_spacing)):
        differences.append("spacing")
    if image.GetDimension() == reference.GetDimension():
        offset = reference.TransformPhysicalPointToContinuousIndex(image.GetOrigin())
        if np.any(np.abs(np.asarray(offset)) > ORIGIN_TOLERANCE_VOXELS):
            differences.append("origin")
    else:
        differences.append("origin")
    direction = np.asarray(image.GetDirection(), dtype=float)
    reference_direction = np.asarray(reference.GetDirection(), dtype=float)
    if direction.shape != reference_direction.shape or np.any(
            np.abs(direction - reference_direction) > DIRECTION_TOLERANCE):
        differences.append("direction")
    return differences


def physical_bounding_box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners in LPS millimetres of the box around the image's 8 outer voxel corners.

    Voxel edges, not centres (continuous index -0.5 and size - 0.5), so a single-slice
    volume still has its slice thickness.
    """
    size = image.GetSize()
    corners = [
        image.TransformContinuousIndexToPhysicalPoint(
            [(-0.5 if (corner >> axis) & 1 == 0 else size[axis] - 0.5) for axis in range(3)])
        for corner in range(8)
    ]
    points = np.asarray(corners, dtype=float)
    return points.min(axis=0), points.max(axis=0)


def overlap_fraction(image: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of ``reference``'s physical bounding box that ``image``'s bounding box covers."""
    low, high = physical_bounding_box(image)
    reference_low, reference_high = physical_bounding_box(reference)
    intersection = np.clip(np.minimum(high, reference_high) - np.maximum(low, reference_low), 0.0, None)
    reference_volume = float(np.prod(reference_high - reference_low))
    return float(np.prod(intersection)) / reference_volume if reference_volume > 0 else 0.0


def resample_like(image: sitk.Image, reference: sitk.Image, interpolator: str = "linear",
                  default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid (size, spacing, origin, direction) in physical space.

    ``interpolator`` is ``"linear"`` or ``"bspline"`` for intensities (output float32) or
    ``"nearest"`` for label maps (output keeps the input pixel type, so labels stay labels).
    Voxels of the reference grid outside ``image`` get ``default_value``.
    """
    method = _interpolator(interpolator)
    pixel_type = image.GetPixelID() if interpolator == "nearest" else sitk.sitkFloat32
    return sitk.Resample(image, reference, sitk.Transform(), method, float(default_value), pixel_type)


def resample_to_spacing(image: sitk.Image, spacing: Sequence[float], interpolator: str = "linear",
                        default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` to voxel ``spacing`` given in SimpleITK order ``(x, y, z)`` millimetres.

    Note the order: ``image.GetSpacing()`` order, the reverse of the array-order spacing used
    by the numpy functions (docs/architecture.md). The direction is kept, the size becomes
    ``round(size * old_spacing / spacing)`` (at least 1), and the origin moves by half the
    change in spacing so the outer edge of the volume stays where it was. Output pixel type
    as in :func:`resample_like`.
    """
    new_spacing = np.asarray([float(s) for s in spacing], dtype=float)
    if new_spacing.shape != (image.GetDimension(),) or not np.all(np.isfinite(new_spacing)) or np.any(
            new_spacing <= 0):
        raise MultiModalSegError(
            f"The target spacing {list(spacing)} must be {image.GetDimension()} positive numbers in (x, y, z) "
            "order (millimetres); fix it.")
    old_spacing = np.asarray(image.GetSpacing(), dtype=float)
    old_size = np.asarray(image.GetSize(), dtype=float)
    new_size = np.maximum(1, np.rint(old_size * old_spacing / new_spacing)).astype(int).tolist()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(), -1)
    new_origin = np.asarray(image.GetOrigin(), dtype=float) + direction @ ((new_spacing - old_spacing) / 2.0)
    method = _interpolator(interpolator)
    pixel_type = image.GetPixelID() if interpolator == "nearest" else sitk.sitkFloat32
    return sitk.Resample(image, new_size, sitk.Transform(), method, tuple(new_origin), tuple(new_spacing),
                         image.GetDirection(), float(default_value), pixel_type)


def restore_to_reference(array_zyx: np.ndarray, reference_image: sitk.Image) -> sitk.Image:
    """Wrap a ``(z, y, x)`` array as an image with ``reference_image``'s exact origin, spacing, direction.

    The array must have the reference's shape in array order. Booleans become uint8 and
    float16 becomes float32 (types SimpleITK cannot hold); other dtypes are kept.
    """
    array = np.asarray(array_zyx)
    expected = tuple(reversed(reference_image.GetSize()))
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} does not match the reference grid {expected} (z, y, x)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    image = sitk.GetImageFromArray(array, isVector=False)
    image.CopyInformation(reference_image)
    return image


def _check_scalar_3d(image: sitk.Image, what: str) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise MultiModalSegError(
            f"The {what} must be a 3D scalar image, but it is {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} value(s) per voxel; give a 3D volume.")


def _minimum_value(image: sitk.Image) -> float:
    statistics = sitk.MinimumMaximumImageFilter()
    statistics.Execute(image)
    return float(statistics.GetMinimum())


def _why(differences: list[str], is_reference: bool) -> str:
    if is_reference:
        return "reference modality"
    if not differences:
        return "already on the reference grid"
    return f"{', '.join(differences)} differ{'s' if len(differences) == 1 else ''} from the reference"


def _refuse_poor_overlap(what: str, reference: str, fraction: float) -> None:
    if fraction <= 0.0:
        raise MultiModalSegError(
            f"The {what} does not overlap the reference modality '{reference}' in physical space; check that "
            "the files belong to the same study (same patient and scanner coordinate system).")
    if fraction < MINIMUM_OVERLAP_FRACTION:
        raise MultiModalSegError(
            f"The {what} covers only {100 * fraction:.1f} % of the reference modality '{reference}' "
            f"(at least {100 * MINIMUM_OVERLAP_FRACTION:.0f} % is needed); check that the files belong to the "
            "same study.")


def align_to_reference(images: dict[str, sitk.Image], reference: str, label: sitk.Image | None = None
                       ) -> tuple[dict[str, sitk.Image], sitk.Image | None, list[dict[str, Any]]]:
    """Bring every modality (and ``label``) onto the grid of ``images[reference]``.

    Returns ``(aligned, aligned_label, report)``: ``aligned`` has the same keys and order as
    ``images``, each a float32 image with the reference's exact geometry; ``aligned_label``
    is ``label`` on that grid (nearest neighbour, pixel type kept) or None; ``report`` has
    one JSON-ready dict per modality: ``name``, ``resampled`` (bool), ``reasons`` (which of
    size/spacing/origin/direction differ), ``why`` (a sentence) and ``overlap_fraction``.

    Images on the reference grid within tolerance are not interpolated: their voxel values
    pass through unchanged (only cast to float32) and the reference's geometry is stamped on
    them. Others are resampled linearly; reference voxels outside the image get the
    image's minimum (air for CT, background for MR) rather than an invented 0.
    Raises MultiModalSegError when ``reference`` is not among the images or an image
    covers less than :data:`MINIMUM_OVERLAP_FRACTION` of the reference.
    """
    if reference not in images:
        raise MultiModalSegError(
            f"The reference modality '{reference}' is not among the images ({', '.join(images) or 'none'}); "
            "give it, or choose one of those as the reference.")
    reference_image = images[reference]
    _check_scalar_3d(reference_image, f"'{reference}' image")

    aligned: dict[str, sitk.Image] = {}
    report: list[dict[str, Any]] = []
    for name, image in images.items():
        _check_scalar_3d(image, f"'{name}' image")
        is_reference = name == reference
        differences = [] if is_reference else grid_differences(image, reference_image)
        fraction = 1.0 if is_reference else overlap_fraction(image, reference_image)
        if not is_reference:
            _refuse_poor_overlap(f"modality '{name}'", reference, fraction)
        if differences:
            output = resample_like(image, reference_image, "linear", default_value=_minimum_value(image))
        else:
            output = sitk.Cast(image, sitk.sitkFloat32)
            output.CopyInformation(reference_image)
        aligned[name] = output
        report.append({"name": name, "resampled": bool(differences), "reasons": differences,
                       "why": _why(differences, is_reference), "overlap_fraction": round(fraction, 4)})

    aligned_label = None
    if label is not None:
        _check_scalar_3d(label, "label")
        if grid_differences(label, reference_image):
            _refuse_poor_overlap("label", reference, overlap_fraction(label, reference_image))
            aligned_label = resample_like(label, reference_image, "nearest", default_value=0)
        else:
            aligned_label = sitk.Image(label)
            aligned_label.CopyInformation(reference_image)
    return aligned, aligned_label, report
