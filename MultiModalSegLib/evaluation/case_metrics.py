"""Per-case metrics of one label map against its reference: one row per label (or region).

A *region* is what gets scored: a set of label values whose union is one mask. Every
manifest label is a region of one value; a manifest may add composite regions (BraTS:
whole tumor = {1, 2, 4}, tumor core = {1, 4}, enhancing tumor = {4}) under ``regions``.

Each :class:`CaseMetrics` row holds what the papers' tables need, all from
:mod:`MultiModalSegLib.metrics` (equal to MedPy, which the reference code uses):

* ``dice``, ``jaccard`` (fractions; the tables print percent);
* ``assd`` (MAML Table 1's ASSD), ``hd95`` (DTC's 95HD) and ``asd`` (DTC's ASD, the
  *directed* mean distance prediction -> reference, as the DTC reference code computes it
  with ``metric.binary.asd(pred, gt)``), each in voxels (the papers' unit) and in mm
  (spacing of the reference image, array order);
* predicted and reference volume in ml and the empty flags.

Empty masks follow :mod:`MultiModalSegLib.metrics`: Dice and Jaccard are 1.0 when both are
empty and 0.0 when only one is; every distance is ``nan`` when either mask is empty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

__all__ = [
    "CSV_COLUMNS",
    "CaseMetrics",
    "Region",
    "case_metrics",
    "parse_region",
    "regions_for_labels",
]

CSV_COLUMNS: tuple[str, ...] = (
    "case_id", "label", "kind", "values",
    "dice", "jaccard",
    "assd_voxel", "assd_mm", "hd95_voxel", "hd95_mm", "asd_voxel", "asd_mm",
    "predicted_ml", "reference_ml", "predicted_voxels", "reference_voxels",
    "predicted_empty", "reference_empty",
    "available", "spacing_mm",
)
"""Columns of ``per_case.csv`` in order (``values``, ``available`` and ``spacing_mm`` are ``;``-joined)."""

FLOAT_METRICS: tuple[str, ...] = (
    "dice", "jaccard", "assd_voxel", "assd_mm", "hd95_voxel", "hd95_mm", "asd_voxel", "asd_mm",
    "predicted_ml", "reference_ml",
)
"""The numeric columns that a summary averages."""


@dataclass(frozen=True)
class Region:
    """A scored structure: the union of ``values`` in the label map.

    ``kind`` is ``"label"`` for a manifest label (one value) and ``"region"`` for a
    composite such as BraTS' whole tumor ``(1, 2, 4)``.
    """

    name: str
    values: tuple[int, ...]
    kind: str = "label"

    def mask(self, labelmap: np.ndarray) -> np.ndarray:
        """Boolean mask of this region in a label map of label *values*."""
        if len(self.values) == 1:
            return labelmap == self.values[0]
        return np.isin(labelmap, self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "kind": self.kind}


def _region_from_entry(entry: Any, where: str) -> Region:
    if not isinstance(entry, Mapping) or "name" not in entry or "values" not in entry:
        raise MultiModalSegError(
            f"A region in {where} is not {{\"name\": ..., \"values\": [...]}}; write each region as a name and the "
            "label values it joins, e.g. {\"name\": \"whole tumor\", \"values\": [1, 2, 4]}.")
    values = entry["values"]
    if isinstance(values, (int, np.integer)):
        values = [values]
    try:
        parsed = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise MultiModalSegError(
            f"The values of region '{entry['name']}' in {where} must be whole label values, e.g. [1, 2, 4].") from None
    if not parsed:
        raise MultiModalSegError(f"Region '{entry['name']}' in {where} names no label values; list at least one.")
    return Region(str(entry["name"]), parsed, "region")


def parse_region(text: str) -> Region:
    """``"whole tumor=1,2,4"`` -> ``Region("whole tumor", (1, 2, 4), "region")`` (the CLI's ``--region``)."""
    name, sep, values = str(text).partition("=")
    name = name.strip()
    try:
        parsed = tuple(sorted({int(v) for v in values.replace(";", ",").split(",") if v.strip()}))
    except ValueError:
        parsed = ()
    if not sep or not name or not parsed:
        raise MultiModalSegError(
            f"The region '{text}' is not NAME=VALUE[,VALUE...]; write e.g. --region \"whole tumor=1,2,4\".")
    return Region(name, parsed, "region")


def regions_for_labels(labels: Sequence[Mapping[str, Any]], regions: Iterable[Mapping[str, Any] | Region] = (),
                       where: str = "the model manifest") -> list[Region]:
    """The regions to score: each label (one value), then each composite region.

    Args:
        labels: the manifest's ``labels`` ({"value", "name", ...}, class-index order).
        regions: composite regions, as manifest entries ``{"name", "values"}`` or
            :class:`Region` objects; their values must be label values of ``labels``.
        where: what to name in error messages.

    Raises:
        MultiModalSegError: a region names an unknown value, or two regions share a name.
    """
    result = [Region(str(label["name"]), (int(label["value"]),), "label") for label in labels]
    known_values = {region.values[0] for region in result}
    for entry in regions:
        region = entry if isinstance(entry, Region) else _region_from_entry(entry, where)
        unknown = sorted(set(region.values) - known_values)
        if unknown:
            raise MultiModalSegError(
                f"Region '{region.name}' in {where} joins the value(s) {unknown}, which are not label values of the "
                f"model ({sorted(known_values)}); use the model's label values.")
        if region.kind != "region":
            region = Region(region.name, region.values, "region")
        result.append(region)
    names = [region.name for region in result]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise MultiModalSegError(
            f"The label or region name(s) {duplicates} appear twice in {where}; give every region its own name.")
    return result


@dataclass
class CaseMetrics:
    """One row of ``per_case.csv``: one case scored on one region."""

    case_id: str
    label: str
    kind: str
    values: tuple[int, ...]
    dice: float
    jaccard: float
    assd_voxel: float
    assd_mm: float
    hd95_voxel: float
    hd95_mm: float
    asd_voxel: float
    asd_mm: float
    predicted_ml: float
    reference_ml: float
    predicted_voxels: int
    reference_voxels: int
    predicted_empty: bool
    reference_empty: bool
    available: tuple[str, ...] = ()
    spacing_mm: tuple[float, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples, ``None`` for nan), for JSON."""
        record = asdict(self)
        for key, value in record.items():
            if isinstance(value, tuple):
                record[key] = list(value)
            elif isinstance(value, float) and not math.isfinite(value):
                record[key] = None
        return record

    def to_csv_row(self) -> dict[str, str]:
        """Strings for ``csv.DictWriter``: floats round-trip exactly (``repr``), nan is empty."""
        row: dict[str, str] = {}
        for key in CSV_COLUMNS:
            value = getattr(self, key)
            if isinstance(value, bool):
                row[key] = "1" if value else "0"
            elif isinstance(value, float):
                row[key] = repr(value) if math.isfinite(value) else ""
            elif isinstance(value, tuple):
                row[key] = ";".join(repr(v) if isinstance(v, float) else str(v) for v in value)
            else:
                row[key] = str(value)
        return row


def case_metrics(case_id: str, prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                 regions: Sequence[Region], available: Sequence[str] = ()) -> list[CaseMetrics]:
    """Score a predicted label map against the reference label map, one row per region.

    Args:
        case_id: the case's id (first column).
        prediction: label *values* ``[z, y, x]`` (``PredictionResult.labelmap``).
        reference: label values ``[z, y, x]`` on the same grid.
        spacing: voxel spacing in mm, array order ``(z, y, x)``
            (``tuple(reversed(image.GetSpacing()))``).
        regions: what to score (:func:`regions_for_labels`).
        available: the modalities the prediction used (a column, for --missing runs).

    Returns:
        one :class:`CaseMetrics` per region, in ``regions`` order.
    """
    from MultiModalSegLib.metrics import dice, jaccard, surface_metrics

    prediction = np.asarray(prediction)
    reference = np.asarray(reference)
    if prediction.shape != reference.shape:
        raise MultiModalSegError(
            f"The prediction of case '{case_id}' has shape {prediction.shape} but its label map has shape "
            f"{reference.shape}; resample one onto the other's grid before scoring.")
    spacing_values = tuple(float(s) for s in spacing)
    if len(spacing_values) != prediction.ndim:
        raise MultiModalSegError(
            f"Case '{case_id}' has {prediction.ndim} axes but {len(spacing_values)} spacing values; give one per axis.")
    voxel_ml = float(np.prod(spacing_values)) / 1000.0
    rows = []
    for region in regions:
        predicted = region.mask(prediction)
        truth = region.mask(reference)
        predicted_voxels = int(np.count_nonzero(predicted))
        reference_voxels = int(np.count_nonzero(truth))
        in_voxels = surface_metrics(predicted, truth)
        in_mm = surface_metrics(predicted, truth, spacing_values)
        rows.append(CaseMetrics(
            case_id=str(case_id), label=region.name, kind=region.kind, values=tuple(region.values),
            dice=float(dice(predicted, truth)), jaccard=float(jaccard(predicted, truth)),
            assd_voxel=in_voxels["assd"], assd_mm=in_mm["assd"],
            hd95_voxel=in_voxels["hd95"], hd95_mm=in_mm["hd95"],
            asd_voxel=in_voxels["asd_pred_to_ref"], asd_mm=in_mm["asd_pred_to_ref"],
            predicted_ml=predicted_voxels * voxel_ml, reference_ml=reference_voxels * voxel_ml,
            predicted_voxels=predicted_voxels, reference_voxels=reference_voxels,
            predicted_empty=predicted_voxels == 0, reference_empty=reference_voxels == 0,
            available=tuple(available), spacing_mm=spacing_values,
        ))
    return rows
