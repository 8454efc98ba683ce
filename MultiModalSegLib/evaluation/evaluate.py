"""Run a model package over labeled cases and score every case: ``evaluate_model``.

The cases come from :func:`MultiModalSegLib.datasets.load_cases` (any ``--data`` spec) or
from code (training's validation, the ``make reproduce`` scripts). Each case goes through
:func:`MultiModalSegLib.inference.predict`, exactly as ``mmseg predict`` would segment it,
so an evaluation measures what a user gets. ``missing`` removes modalities from every
case's inputs before prediction (MAML's missing-modality setting, MAML Table 2); the
prediction's ``available`` says what the network saw.

Before any network runs, every case is checked, so a bad data set fails in a second and
not after an hour: modalities the model does not know, modalities it needs but the case
lacks, label maps that are not 3D whole numbers or do not lie on the grid of their
reference image. Cases without a label map are skipped (and listed); no labeled case at
all is an error.

Label maps hold label *values* (BraTS 0, 1, 2, 4); each manifest label is compared by its
value, and composite regions (the manifest's ``regions``, or ``regions=`` here) by the
union of their values. When the reference modality itself is left out (``missing``), the
prediction lies on another modality's grid and is resampled (nearest neighbour) onto the
label's grid before scoring; the case says so (``resampled_prediction``).
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.evaluation.case_metrics import CSV_COLUMNS, CaseMetrics, Region, case_metrics, regions_for_labels
from MultiModalSegLib.evaluation.summary import (
    RegionSummary,
    both_empty_sentences,
    counts_table,
    detail_table,
    dtc_table,
    maml_table,
    summarize,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from MultiModalSegLib.datasets import Case
    from MultiModalSegLib.weights import ModelPackage

__all__ = ["EvaluationResult", "check_missing", "evaluate_model"]

CaseProgress = Callable[[int, int, dict[str, Any]], None]
"""Called with ``(cases done, cases total, info)``; ``info`` is ``{}`` for the first call (0 done)."""

PER_CASE_CSV = "per_case.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def _jsonable(value: Any) -> Any:
    """Plain JSON values: ``nan``/``inf`` become ``None``, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class EvaluationResult:
    """What :func:`evaluate_model` measured.

    ``rows``: one :class:`CaseMetrics` per scored case and region; ``summary``: one
    :class:`RegionSummary` per region (the numbers of the tables); ``cases``: per case,
    what was fed to the network and how long it took; ``skipped``: cases left out (no
    label map) and why; ``warnings``: sentences worth a look (e.g. label values the model
    does not know, which count as background).
    """

    model: dict[str, Any]
    data: str | None
    missing: list[str]
    available: list[str]
    regions: list[Region]
    rows: list[CaseMetrics]
    summary: list[RegionSummary]
    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def method_name(self) -> str:
        """How a table row names this run: ``id vN``, plus the modalities left out."""
        name = f"{self.model.get('id', 'model')} v{self.model.get('version', '?')}"
        if self.missing:
            name += f" without {', '.join(self.missing)}"
        return name

    def region_summary(self, name: str) -> RegionSummary:
        """The summary of one label or region by name."""
        for region in self.summary:
            if region.name == name:
                return region
        raise KeyError(f"No label or region named '{name}'; there are {', '.join(r.name for r in self.summary)}.")

    def mean(self, region: str, metric: str = "dice") -> float:
        """Shortcut for training validation and scripts: the mean of one metric of one region."""
        return self.region_summary(region).metrics[metric].mean

    def per_case_csv(self) -> str:
        """``per_case.csv`` as text (columns :data:`CSV_COLUMNS`; nan as an empty field)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row.to_csv_row())
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """``summary.json``: the run's settings, the per-region statistics and the per-case info."""
        return _jsonable({
            "model": self.model,
            "data": self.data,
            "missing": self.missing,
            "available": self.available,
            "n_cases": len(self.cases),
            "n_skipped": len(self.skipped),
            "statistics": self.statistics,
            "labels": [region.to_dict() for region in self.summary],
            "cases": self.cases,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "timing": self.timing,
        })

    def markdown(self) -> str:
        """``summary.md``: the papers' table layouts for this run, then every metric with its CI and n."""
        stats = self.statistics
        inputs = ", ".join(self.available)
        missing = ", ".join(self.missing) if self.missing else "none"
        data = f"`{self.data}`" if self.data else "cases given in code"
        lines = [
            (f"# Evaluation of {self.model.get('id', 'model')} v{self.model.get('version', '?')} "
             f"({str(self.model.get('method', '')).upper()})"),
            "",
            f"Data: {data}: {len(self.cases)} labeled case(s) scored"
            + (f", {len(self.skipped)} without a label map skipped" if self.skipped else "") + ".",
            f"Inputs: {inputs} (left out: {missing}).",
            "",
            (f"Cells: mean ± sample standard deviation [percentile bootstrap {round(100 * (1 - stats['alpha']))} % "
             f"confidence interval of the mean, {stats['resamples']} resamples, seed {stats['seed']}], over the "
             "cases whose reference contains the structure; distances also need a non-empty prediction "
             "(see the last table). Distances in voxels, as in the papers."),
            "",
            "## MAML Table 1 layout (Dice [%], ASSD [voxel])",
            "",
            maml_table([(self.method_name, self.summary)]),
            "## DTC Tables 1-2 layout (Dice [%], Jaccard [%], 95HD [voxel], ASD [voxel])",
            "",
            dtc_table([(self.method_name, self.summary)]),
            ("ASSD is the symmetric mean surface distance (MedPy `assd`); ASD is the directed mean distance "
             "prediction -> reference (MedPy `asd(pred, gt)`, as the DTC reference code computes it); 95HD is the "
             "95th percentile of both directions pooled (MedPy `hd95`)."),
            "",
            "## Every metric",
            "",
            detail_table(self.summary),
            "## Cases behind each row",
            "",
            counts_table(self.summary),
        ]
        both_empty = both_empty_sentences(self.summary)
        if both_empty:
            lines += [f"- {sentence}" for sentence in both_empty] + [""]
        if self.warnings:
            lines += ["## Warnings", ""] + [f"- {warning}" for warning in self.warnings] + [""]
        return "\n".join(lines)

    def write(self, folder: str | Path) -> dict[str, Any]:
        """Write ``per_case.csv``, ``summary.json`` and ``summary.md`` atomically; return the JSON."""
        from MultiModalSegLib.atomic import atomic_write_json, atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / PER_CASE_CSV, self.per_case_csv())
        atomic_write_text(folder / SUMMARY_MD, self.markdown())
        record = self.to_dict()
        files = [PER_CASE_CSV, SUMMARY_JSON, SUMMARY_MD]
        for case in self.cases:  # predictions written inside the folder are listed relative to it
            if case.get("prediction"):
                try:
                    files.append(Path(case["prediction"]).relative_to(folder.resolve()).as_posix())
                except ValueError:
                    pass
        record["files"] = files
        atomic_write_json(folder / SUMMARY_JSON, record)
        return record


# --------------------------------------------------------------------------- checks


def check_missing(package: ModelPackage, missing: Iterable[str]) -> list[str]:
    """The modalities to leave out, in manifest order, after checking them against the model.

    Raises:
        MultiModalSegError: a name the model does not know, every modality named, or a model
            that cannot run with a modality missing (DTC).
    """
    names = [str(name) for name in missing]
    if not names:
        return []
    known = package.modalities
    unknown = sorted({name for name in names if name not in known})
    if unknown:
        raise MultiModalSegError(
            f"--missing names {', '.join(unknown)}, which model '{package.id}' does not have; its modalities are "
            f"{', '.join(known)}. Name one of those.")
    if not package.supports_missing_modalities:
        raise MultiModalSegError(
            f"Model '{package.id}' ({package.method.upper()}) needs every modality ({', '.join(known)}) and cannot "
            "be evaluated with one missing; drop --missing or pick a MAML model.")
    left_out = [name for name in known if name in set(names)]
    if len(left_out) == len(known):
        raise MultiModalSegError(
            f"--missing leaves out every modality of model '{package.id}' ({', '.join(known)}); keep at least one.")
    return left_out


def _label_reference_name(case: Case, package: ModelPackage) -> str:
    """The modality whose grid the case's label map must share: the model's reference if the case has it."""
    if package.reference_modality in case.images:
        return package.reference_modality
    return next(name for name in package.modalities if name in case.images)


def _check_case(case: Case, package: ModelPackage, missing: Sequence[str]) -> None:
    """Refuse a case the evaluation cannot score, with a sentence that says what to fix."""
    from MultiModalSegLib.datasets import geometry_difference

    known = package.modalities
    unknown = [name for name in case.images if name not in known]
    if unknown:
        raise MultiModalSegError(
            f"Case '{case.case_id}' ({case.source}) has the modality {', '.join(unknown)}, which model "
            f"'{package.id}' does not know (it knows {', '.join(known)}); rename the image or load only the model's "
            "modalities.")
    lacking = [name for name in known if name not in missing and name not in case.images]
    if lacking:
        raise MultiModalSegError(
            f"Case '{case.case_id}' ({case.source}) has no {', '.join(lacking)} image, which model '{package.id}' "
            f"needs; add it, or evaluate without it with --missing {' '.join(lacking)}.")
    if case.label is None:
        return
    label = case.label
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise MultiModalSegError(
            f"The label of case '{case.case_id}' ({case.source}) is not a 3D scalar image; save it as a 3D label map.")
    reference_name = _label_reference_name(case, package)
    difference = geometry_difference(label, case.images[reference_name])
    if difference is not None:
        raise MultiModalSegError(
            f"The label of case '{case.case_id}' ({case.source}) does not lie on the grid of its '{reference_name}' "
            f"image ({difference}); resample the label onto that image or fix its header.")


def _label_array(case: Case) -> np.ndarray:
    import SimpleITK as sitk

    values = sitk.GetArrayFromImage(case.label)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or not np.all(np.mod(values, 1) == 0):
            raise MultiModalSegError(
                f"The label of case '{case.case_id}' ({case.source}) holds non-integer values; save it as a label map "
                "with whole-number labels.")
        values = values.astype(np.int64)
    return values


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "case"


# --------------------------------------------------------------------------- evaluation


def evaluate_model(
    package: ModelPackage | str | Path,
    cases: Sequence[Case],
    missing: Iterable[str] = (),
    device: str = "cpu",
    overlap: float = 0.5,
    batch_size: int = 1,
    largest_component: bool | None = None,
    regions: Iterable[Mapping[str, Any] | Region] = (),
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    network: torch.nn.Module | None = None,
    progress: CaseProgress | None = None,
    predictions_folder: str | Path | None = None,
    data: str | None = None,
    tta: bool = False,
) -> EvaluationResult:
    """Segment every labeled case with ``package`` and score it against its label map.

    Args:
        package: a loaded model package, a package folder or a model id.
        cases: :class:`~MultiModalSegLib.datasets.Case` objects; unlabeled ones are skipped.
        missing: modalities to remove from every case's inputs (MAML only).
        device: ``cpu``, ``cuda[:N]`` or ``auto``.
        overlap, batch_size, largest_component, tta: passed to :func:`~MultiModalSegLib.inference.predict`
            (``largest_component`` None: the package plan's post-processing).
        regions: composite regions to score besides the manifest's labels and ``regions``,
            as ``{"name": ..., "values": [...]}`` or :class:`Region`.
        bootstrap: resamples of the bootstrap CI; ``seed`` and ``alpha`` as in
            :func:`~MultiModalSegLib.evaluation.summary.bootstrap_ci`.
        network: an already built network of this package on ``device`` (training's
            validation passes its own; otherwise it is built once here).
        progress: called after each case, see :data:`CaseProgress`.
        predictions_folder: when given, each predicted label map is written there as
            ``<case id>.nii.gz`` (on the label's grid).
        data: a description of where the cases came from (the ``--data`` spec), for the report.

    Returns:
        an :class:`EvaluationResult`; ``result.write(folder)`` saves the CSV and summaries.

    Raises:
        MultiModalSegError: no case, no labeled case, a modality the model does not know or
            a case lacks, a bad ``missing``, a label off its image's grid, bad settings.
    """
    from MultiModalSegLib.inference import resolve_device
    from MultiModalSegLib.weights import ModelPackage, load_model_package

    started = time.perf_counter()
    if not isinstance(package, ModelPackage):
        package = load_model_package(package)
    if not 0.0 <= overlap < 1.0:
        raise MultiModalSegError(f"The overlap must be in [0, 1), got {overlap}.")
    if batch_size < 1:
        raise MultiModalSegError(f"The batch size must be at least 1, got {batch_size}.")
    if bootstrap < 1:
        raise MultiModalSegError(f"The number of bootstrap resamples must be at least 1, got {bootstrap}.")
    left_out = check_missing(package, missing)
    scored_regions = regions_for_labels(package.labels, [*package.manifest.get("regions", []), *regions],
                                        where=f"model '{package.id}' and the requested regions")
    if not cases:
        raise MultiModalSegError("There are no cases to evaluate; point --data at a folder, a case list or phantom:.")
    for case in cases:
        _check_case(case, package, left_out)
    labeled = [case for case in cases if case.label is not None]
    skipped = [{"case_id": case.case_id, "source": case.source, "reason": "no label map"}
               for case in cases if case.label is None]
    if not labeled:
        raise MultiModalSegError(
            f"None of the {len(cases)} case(s) has a label map, so nothing can be scored; add label maps "
            "(nnU-Net labelsTr, CASE_seg.nii.gz, or \"label\" in a case list).")

    device = resolve_device(device)
    if network is None:
        network = package.build_network(device)
    was_training = network.training  # predict() switches to eval mode; a training loop gets its mode back
    try:
        rows, case_info, warnings, available_union = _predict_and_score(
            package, labeled, left_out, scored_regions, network, device, overlap, batch_size, largest_component,
            progress, predictions_folder, tta)
    finally:
        network.train(was_training)
    summary = summarize(rows, scored_regions, resamples=bootstrap, seed=seed, alpha=alpha)
    return EvaluationResult(
        model={"id": package.id, "version": package.version, "method": package.method,
               "folder": str(package.folder)},
        data=data,
        missing=left_out,
        available=available_union,
        regions=scored_regions,
        rows=rows,
        summary=summary,
        cases=case_info,
        skipped=skipped,
        warnings=warnings,
        statistics={"resamples": int(bootstrap), "seed": int(seed), "alpha": float(alpha),
                    "ci": "percentile bootstrap of the mean over cases", "std": "sample standard deviation (ddof=1)",
                    "cases_counted": "cases whose reference contains the structure; distances also need a "
                                     "non-empty prediction"},
        timing={"device": device, "seconds": round(time.perf_counter() - started, 3), "overlap": overlap},
    )


def _predict_and_score(package: ModelPackage, labeled: Sequence[Case], left_out: Sequence[str],
                       scored_regions: Sequence[Region], network: torch.nn.Module, device: str, overlap: float,
                       batch_size: int, largest_component: bool | None, progress: CaseProgress | None,
                       predictions_folder: str | Path | None, tta: bool = False
                       ) -> tuple[list[CaseMetrics], list[dict[str, Any]], list[str], list[str]]:
    """The loop of :func:`evaluate_model`: predict each labeled case, bring it onto the label's grid, score it."""
    import SimpleITK as sitk

    from MultiModalSegLib.datasets import geometry_difference
    from MultiModalSegLib.imageio import write_image
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.preprocessing import resample_like

    known_values = {int(label["value"]) for label in package.labels}
    out_folder = Path(predictions_folder) if predictions_folder is not None else None
    rows: list[CaseMetrics] = []
    case_info: list[dict[str, Any]] = []
    warnings: list[str] = []
    available_union: list[str] = []
    if progress is not None:
        progress(0, len(labeled), {})
    for number, case in enumerate(labeled, start=1):
        case_started = time.perf_counter()
        images = {name: case.images[name] for name in package.modalities
                  if name in case.images and name not in left_out}
        result = predict(package, images, device=device, overlap=overlap, batch_size=batch_size,
                         largest_component=largest_component, network=network, tta=tta)
        for message in result.warnings:
            if message not in warnings:
                warnings.append(message)
        leaked = [name for name in left_out if name in result.available]
        if leaked:  # pragma: no cover - predict only sees the images given
            raise RuntimeError(f"the prediction used the left-out modality {leaked}")
        for name in result.available:
            if name not in available_union:
                available_union.append(name)
        label = case.label
        assert label is not None
        prediction = result.labelmap
        resampled = geometry_difference(result.reference, label) is not None
        if resampled:
            prediction = sitk.GetArrayFromImage(resample_like(result.labelmap_image, label, "nearest"))
        reference = _label_array(case)
        stray = sorted(int(v) for v in np.unique(reference) if int(v) != 0 and int(v) not in known_values)
        if stray:
            warnings.append(f"The label of case '{case.case_id}' holds the value(s) {stray}, which model "
                            f"'{package.id}' does not have; they count as background.")
        spacing = tuple(reversed(label.GetSpacing()))
        case_rows = case_metrics(case.case_id, prediction, reference, spacing, scored_regions, result.available)
        rows.extend(case_rows)
        info: dict[str, Any] = {
            "case_id": case.case_id, "source": case.source, "available": list(result.available),
            "reference_modality": result.reference_modality, "resampled_prediction": resampled,
            "spacing_mm": list(spacing), "seconds": round(time.perf_counter() - case_started, 3),
            "predict_seconds": result.timing.get("total_s"), "postprocessing": result.postprocessing,
            "dice": {row.label: row.dice for row in case_rows},
        }
        if out_folder is not None:
            image = sitk.GetImageFromArray(np.ascontiguousarray(prediction.astype(np.uint8)))
            image.CopyInformation(label)
            path = out_folder / f"{_safe_file_name(case.case_id)}.nii.gz"
            out_folder.mkdir(parents=True, exist_ok=True)
            write_image(image, path)
            info["prediction"] = str(path.resolve())
        case_info.append(info)
        if progress is not None:
            progress(number, len(labeled), info)

    return rows, case_info, warnings, available_union
