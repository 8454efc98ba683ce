"""``mmseg models``: the model packages as a table a person reads (``--json`` gives one object per model).

Columns: id, version, method, modalities (in channel order), labels, what it was trained on
(the manifest's provenance), the data plan's target spacing (the grid ``predict`` resamples
to; "input grid" for packages without a plan, which work on the input's own grid) and where
the package lives (bundled, read-only, or the user's model store). Long cells are shortened
with "..." so a row stays on one line; ``--json`` keeps them whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from MultiModalSegLib.weights import ModelPackage

__all__ = ["format_models_table", "model_row", "plan_spacing"]

COLUMNS = (("id", 28), ("version", 7), ("method", 6), ("modalities", 26), ("labels", 40), ("trained on", 32),
           ("plan spacing", 18), ("source", 7))
"""(header, widest cell) per column."""


def plan_spacing(manifest: dict[str, Any]) -> list[float] | None:
    """The data plan's ``target_spacing`` (mm), or None for a package that predicts on the input grid."""
    plan = manifest.get("plan")
    spacing = plan.get("target_spacing") if isinstance(plan, dict) else None
    if not isinstance(spacing, (list, tuple)) or not spacing:
        return None
    try:
        return [float(value) for value in spacing]
    except (TypeError, ValueError):
        return None


def _spacing_text(spacing: list[float] | None) -> str:
    if spacing is None:
        return "input grid"
    return " x ".join(f"{value:g}" for value in spacing) + " mm"


def model_row(package: ModelPackage) -> dict[str, Any]:
    """``package.summary()`` plus the plan's target spacing and where the package lives."""
    return {**package.summary(), "target_spacing": plan_spacing(package.manifest),
            "source": "bundled" if package.read_only else "user"}


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def format_models_table(packages: Sequence[ModelPackage]) -> str:
    """The table, header first; column widths fit the content up to each column's limit."""
    rows = []
    for package in packages:
        row = model_row(package)
        rows.append([str(row["id"]), str(row["version"]), str(row["method"]), ", ".join(row["modalities"]),
                     ", ".join(row["labels"]), str(row["trained_on"] or "-"), _spacing_text(row["target_spacing"]),
                     row["source"]])
    widths = [min(limit, max([len(header)] + [len(row[index]) for row in rows]))
              for index, (header, limit) in enumerate(COLUMNS)]
    lines = ["  ".join(header.ljust(width) for (header, _), width in zip(COLUMNS, widths)).rstrip()]
    for row in rows:
        cells = [_shorten(cell, width) for cell, width in zip(row, widths)]
        cells[1] = cells[1].rjust(widths[1])
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    return "\n".join(lines)
