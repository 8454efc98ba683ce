"""Segmentation metrics of the papers' tables: Dice, Jaccard, 95% Hausdorff distance, ASSD.

The values equal ``medpy.metric.binary`` (``dc``, ``jc``, ``hd95``, ``assd``, ``asd``,
``hd``; MedPy 0.5.2, default ``connectivity=1``), which the DTC and MAML reference code
use, to floating-point rounding, and are computed many times faster (see
``bench/bench_metrics.py``).

Definitions (as in MedPy 0.5.2)
-------------------------------
* A mask's *surface* is its foreground voxels that have at least one background
  face-neighbour (``mask ^ binary_erosion(mask, cross)``); a voxel on the volume border
  counts as having a background neighbour outside the volume (erosion with
  ``border_value=0``), so a mask touching the border has surface there.
* ``d(pred -> ref)``: for every surface voxel of ``pred``, the Euclidean distance to the
  nearest surface voxel of ``ref`` (:func:`surface_distances` returns both directions).
* ``hd95``: the 95th percentile (numpy's linear interpolation) of both directed
  distance sets pooled together, ``percentile(concat(d(p->r), d(r->p)), 95)``.
  (Not the maximum of two directed percentiles, which some other libraries use.)
* ``assd``: the mean of both directed sets pooled together. MedPy 0.4 instead averaged
  the two directed means, ``(asd(p, r) + asd(r, p)) / 2``; both directed means are in
  :func:`surface_metrics` to reproduce that if needed.
* ``asd``: the directed mean ``mean(d(pred -> ref))``. The DTC reference code reports
  this as "ASD" (``metric.binary.asd(pred, gt)``).
* ``hd``: the maximum of both directed sets.

Units and axes
--------------
Distances are in voxels when ``spacing`` is None, as in the papers' tables, and in the
unit of ``spacing`` (mm) otherwise. ``spacing`` is in **array order**, one value per
array axis (``tuple(reversed(image.GetSpacing()))`` for a SimpleITK image), or a single
number for all axes, like MedPy's ``voxelspacing``.

Empty masks
-----------
MedPy returns 1.0 for Dice/Jaccard of two empty masks and raises ``RuntimeError`` for
surface distances with an empty mask. Here:

* ``dice``/``jaccard``: both empty -> 1.0 (both agree there is nothing); one empty -> 0.0.
* ``hd95``, ``assd``, ``asd``, ``hd`` and every value of :func:`surface_metrics`: if
  either mask is empty -> ``float("nan")`` (the distance is undefined), so a table can
  report the case and average with ``nanmean`` deliberately.
* :func:`surface_distances`: the directions from an empty mask are empty arrays; the
  distances to an empty mask are ``inf`` (the minimum over an empty set).

Why it is fast
--------------
MedPy erodes both full volumes and runs a full-volume Euclidean distance transform per
direction (four for hd95 + assd). Here both masks are first cropped to their joint
bounding box. That changes nothing: every voxel outside the box is background in both
masks, exactly like the ``border_value=0`` that erosion assumes beyond the volume
border, so eroding the crop padded by one background voxel gives the same surface
voxels (tested on masks that touch the border). The nearest-surface distances are then
found with a k-d tree over the surface voxels' physical coordinates instead of a dense
distance transform: the distance from a point to the nearest point of a finite set does
not depend on the grid around them. Surface voxels shared by both masks have distance 0
and are not queried. The final distances are recomputed from the integer index offsets
the same way ``scipy.ndimage.distance_transform_edt`` computes them, so they agree with
MedPy to the last few bits. :func:`surface_metrics` computes everything in one pass.

This module must not import torch (evaluation runs without it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from MultiModalSegLib.errors import MultiModalSegError

__all__ = [
    "asd",
    "assd",
    "dice",
    "hd95",
    "jaccard",
    "surface_distances",
    "surface_mask",
    "surface_metrics",
]

SpacingLike = float | Sequence[float] | np.ndarray | None


# --------------------------------------------------------------------------- inputs


def _as_mask(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as a boolean mask (nonzero = foreground), refusing floats."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        mask = array
    elif np.issubdtype(array.dtype, np.integer):
        mask = array != 0
    else:
        raise MultiModalSegError(
            f"The {name} mask has dtype {array.dtype}; pass a boolean or integer label mask "
            f"(threshold probabilities or select a label first, e.g. `labels == 1`)."
        )
    if mask.ndim == 0:
        raise MultiModalSegError(f"The {name} mask is a scalar; pass an image-shaped boolean or integer mask.")
    return mask


def _as_mask_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both masks as booleans after checking that their shapes match."""
    pred_mask = _as_mask(pred, "prediction")
    ref_mask = _as_mask(ref, "reference")
    if pred_mask.shape != ref_mask.shape:
        raise MultiModalSegError(
            f"The prediction has shape {pred_mask.shape} but the reference has shape {ref_mask.shape}; "
            f"resample the prediction onto the reference image grid before computing metrics."
        )
    return pred_mask, ref_mask


def _spacing_array(spacing: SpacingLike, ndim: int) -> np.ndarray:
    """Return the voxel spacing as ``ndim`` positive float64 values in array order."""
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    values = np.asarray(spacing, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,):
        raise MultiModalSegError(
            f"The spacing {tuple(values.ravel().tolist())} has {values.size} values but the masks have "
            f"{ndim} axes; give one spacing per array axis in array order (z, y, x)."
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise MultiModalSegError(
            f"The spacing {tuple(values.tolist())} must be positive and finite; "
            f"pass the image spacing in array order, e.g. tuple(reversed(image.GetSpacing()))."
        )
    return values


# --------------------------------------------------------------------------- overlap


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P & R| / (|P| + |R|)``; 1.0 if both masks are empty.

    Equals ``medpy.metric.binary.dc(pred, ref)``.
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    size_sum = np.count_nonzero(pred_mask) + np.count_nonzero(ref_mask)
    if size_sum == 0:
        return 1.0
    return 2.0 * np.count_nonzero(pred_mask & ref_mask) / float(size_sum)


def jaccard(pred: np.ndarray, ref: np.ndarray) -> float:
    """Jaccard index ``|P & R| / |P | R|``; 1.0 if both masks are empty.

    Equals ``medpy.metric.binary.jc(pred, ref)``.
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    union = np.count_nonzero(pred_mask | ref_mask)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred_mask & ref_mask)) / float(union)


# --------------------------------------------------------------------------- surfaces


def _joint_bounding_box(pred_mask: np.ndarray, ref_mask: np.ndarray) -> tuple[slice, ...] | None:
    """Return the tight bounding box of the union of both masks, or None if both are empty."""
    union = pred_mask | ref_mask
    box = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        occupied = np.flatnonzero(np.any(union, axis=other_axes)) if other_axes else np.flatnonzero(union)
        if occupied.size == 0:
            return None
        box.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(box)


def _surface_of(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a background face-neighbour, the outside counting as background.

    Same as ``mask ^ scipy.ndimage.binary_erosion(mask, generate_binary_structure(ndim, 1))``
    (whose ``border_value`` is 0): the mask is padded by one background voxel and a voxel
    stays interior only if both neighbours along every axis are foreground.
    """
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    centre = tuple(slice(1, -1) for _ in range(mask.ndim))
    interior = mask.copy()
    for axis in range(mask.ndim):
        for lo, hi in ((0, -2), (2, None)):
            neighbour = list(centre)
            neighbour[axis] = slice(lo, hi)
            interior &= padded[tuple(neighbour)]
    return mask & ~interior


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Return the boolean surface of ``mask`` (same shape), as MedPy's surface distances define it.

    Computed on the mask's bounding box only, which gives the same voxels as eroding the
    full volume (see the module docstring).
    """
    mask = _as_mask(mask, "input")
    surface = np.zeros(mask.shape, dtype=bool)
    box = _joint_bounding_box(mask, mask)
    if box is not None:
        surface[box] = _surface_of(mask[box])
    return surface


def _surface_voxels(surface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat C-order positions and ``(n, ndim)`` integer indices of the voxels of ``surface``."""
    flat = np.flatnonzero(surface)
    return flat, np.stack(np.unravel_index(flat, surface.shape), axis=1)


def _directed_distances(
    from_flat: np.ndarray,
    from_points: np.ndarray,
    to_surface: np.ndarray,
    to_points: np.ndarray,
    to_tree: cKDTree | None,
    spacing: np.ndarray,
) -> np.ndarray:
    """Distance from every "from" surface voxel (C order) to the nearest voxel of ``to_surface``.

    ``from_flat``/``from_points`` locate the "from" surface voxels (see _surface_voxels),
    ``to_points`` are the integer indices of ``to_surface`` and ``to_tree`` a k-d tree over
    ``to_points * spacing`` (None when ``to_surface`` is empty, giving ``inf``).
    """
    distances = np.zeros(len(from_points), dtype=np.float64)
    if to_tree is None:
        distances[:] = np.inf
        return distances
    # Voxels on both surfaces are at distance 0 from themselves; query only the others.
    elsewhere = ~to_surface.ravel()[from_flat]
    query_points = from_points[elsewhere]
    if len(query_points) == 0:
        return distances
    _, nearest = to_tree.query(query_points * spacing, k=1, workers=-1)
    # Recompute as scipy's distance_transform_edt does, from integer offsets times spacing,
    # so that the values match MedPy's to the last bits.
    offsets = (to_points[nearest] - query_points).astype(np.float64)
    offsets *= spacing
    offsets *= offsets
    squared = offsets[:, 0].copy()
    for axis in range(1, offsets.shape[1]):
        squared += offsets[:, axis]
    distances[elsewhere] = np.sqrt(squared)
    return distances


def _surface_distance_pair(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: np.ndarray, both_directions: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(d(pred -> ref), d(ref -> pred))`` on the joint bounding box; the second is None if not asked for."""
    box = _joint_bounding_box(pred_mask, ref_mask)
    if box is None:
        empty = np.zeros(0, dtype=np.float64)
        return empty, (empty.copy() if both_directions else None)
    pred_surface = _surface_of(pred_mask[box])
    ref_surface = _surface_of(ref_mask[box])
    pred_flat, pred_points = _surface_voxels(pred_surface)
    ref_flat, ref_points = _surface_voxels(ref_surface)
    ref_tree = cKDTree(ref_points * spacing) if len(ref_points) else None
    pred_to_ref = _directed_distances(pred_flat, pred_points, ref_surface, ref_points, ref_tree, spacing)
    if not both_directions:
        return pred_to_ref, None
    pred_tree = cKDTree(pred_points * spacing) if len(pred_points) else None
    ref_to_pred = _directed_distances(ref_flat, ref_points, pred_surface, pred_points, pred_tree, spacing)
    return pred_to_ref, ref_to_pred


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(d(pred -> ref), d(ref -> pred))``, the directed surface distances.

    ``d(pred -> ref)[i]`` is the distance from the i-th surface voxel of ``pred`` (C order,
    as ``surface_mask(pred)[...]`` indexes them) to the nearest surface voxel of ``ref``;
    it equals MedPy's private ``__surface_distances(pred, ref, spacing)``. In voxels
    without ``spacing``, else in its unit (array order). An empty mask has no surface
    voxels (an empty array from it) and distances to it are ``inf``.
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    spacing_values = _spacing_array(spacing, pred_mask.ndim)
    pred_to_ref, ref_to_pred = _surface_distance_pair(pred_mask, ref_mask, spacing_values)
    assert ref_to_pred is not None
    return pred_to_ref, ref_to_pred


def _either_empty(pred_mask: np.ndarray, ref_mask: np.ndarray) -> bool:
    return not pred_mask.any() or not ref_mask.any()


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike = None) -> dict[str, float]:
    """All surface-distance metrics from one pass over the surfaces.

    Returns ``{"hd95", "assd", "hd", "asd_pred_to_ref", "asd_ref_to_pred"}`` as floats,
    each equal to the MedPy function of that name (``asd_pred_to_ref`` is
    ``asd(pred, ref)``); all ``nan`` if either mask is empty. Units as in :func:`hd95`.
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    spacing_values = _spacing_array(spacing, pred_mask.ndim)
    names = ("hd95", "assd", "hd", "asd_pred_to_ref", "asd_ref_to_pred")
    if _either_empty(pred_mask, ref_mask):
        return {name: float("nan") for name in names}
    pred_to_ref, ref_to_pred = _surface_distance_pair(pred_mask, ref_mask, spacing_values)
    assert ref_to_pred is not None
    pooled = np.concatenate((pred_to_ref, ref_to_pred))
    return {
        "hd95": float(np.percentile(pooled, 95)),
        "assd": float(pooled.mean()),
        "hd": float(pooled.max()),
        "asd_pred_to_ref": float(pred_to_ref.mean()),
        "asd_ref_to_pred": float(ref_to_pred.mean()),
    }


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike = None) -> float:
    """95th percentile of the pooled symmetric surface distances; nan if either mask is empty.

    Equals ``medpy.metric.binary.hd95(pred, ref, voxelspacing=spacing)``: voxels without
    ``spacing``, else its unit, ``spacing`` in array order.
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    spacing_values = _spacing_array(spacing, pred_mask.ndim)
    if _either_empty(pred_mask, ref_mask):
        return float("nan")
    pred_to_ref, ref_to_pred = _surface_distance_pair(pred_mask, ref_mask, spacing_values)
    return float(np.percentile(np.concatenate((pred_to_ref, ref_to_pred)), 95))


def assd(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike = None) -> float:
    """Average symmetric surface distance (mean of both directions pooled); nan if either mask is empty.

    Equals ``medpy.metric.binary.assd(pred, ref, voxelspacing=spacing)`` (MedPy 0.5).
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    spacing_values = _spacing_array(spacing, pred_mask.ndim)
    if _either_empty(pred_mask, ref_mask):
        return float("nan")
    pred_to_ref, ref_to_pred = _surface_distance_pair(pred_mask, ref_mask, spacing_values)
    return float(np.concatenate((pred_to_ref, ref_to_pred)).mean())


def asd(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike = None) -> float:
    """Directed average surface distance ``mean(d(pred -> ref))``; nan if either mask is empty.

    Equals ``medpy.metric.binary.asd(pred, ref, voxelspacing=spacing)``; the DTC tables'
    "ASD" column is this with ``pred`` first. Not symmetric: use :func:`assd` for that.
    """
    pred_mask, ref_mask = _as_mask_pair(pred, ref)
    spacing_values = _spacing_array(spacing, pred_mask.ndim)
    if _either_empty(pred_mask, ref_mask):
        return float("nan")
    pred_to_ref, _ = _surface_distance_pair(pred_mask, ref_mask, spacing_values, both_directions=False)
    return float(pred_to_ref.mean())
