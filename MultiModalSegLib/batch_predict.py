"""``mmseg predict --model M --data SPEC --output DIR``: segment every case of a data set.

What it does, and why:

* the model package is verified and its network built **once** (building and loading the
  weights costs as much as segmenting a small case);
* the cases are listed first (:mod:`MultiModalSegLib.batch_cases`) and read one at a time,
  the next case's files in a background thread while the current case runs through the
  network (reading a NIfTI is I/O and zlib, the forward pass is torch; both release the GIL
  for most of their time, so they overlap);
* each case gets ``DIR/<case id>/`` with exactly what single ``predict`` writes
  (``PredictionResult.write``: label map, probabilities, overlays, ``result.json``);
* a case that fails (an unreadable file, a missing modality, a grid the model refuses) is
  recorded with its sentence and the others go on;
* ``DIR/summary.csv`` and ``DIR/summary.json`` list every case (status ``done``, ``skipped``
  or ``failed``, seconds, label volumes in ml, warnings, the error sentence), rewritten after
  every case so an interrupted run still has an honest summary;
* rerunning the command skips every case whose ``result.json`` is complete (it exists,
  names this model and version, and every file it lists is there) unless ``--overwrite``; a
  case is re-segmented by first removing its ``result.json``, so an interrupted write never
  looks complete.

* SIGTERM / SIGINT (Slicer's Cancel, ``kill``, Ctrl-C) stop the run at the next window of the
  case being segmented: that case keeps what it had (nothing, or its earlier complete result),
  the summary lists the cases finished so far and says the run was cancelled, a ``cancelled``
  event is sent, and the same command later goes on from the next unfinished case.

Exit codes (the CLI's): 0 every case done or skipped, :data:`EXIT_CASES_FAILED` (3) when a
case failed, 2 when nothing could start (a user error), 1 an internal error, 143 / 130 when
cancelled by SIGTERM / SIGINT.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.training.cancellation import CancellationToken, RunCancelled, note_late_cancel, report_cancelled

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from MultiModalSegLib.batch_cases import PredictionCase
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.weights import ModelPackage

__all__ = ["EXIT_CASES_FAILED", "BatchOptions", "finished_result", "label_volumes_ml", "predict_data_set",
           "run_batch_predict"]

EXIT_CASES_FAILED = 3
"""Exit code when at least one case failed (the others were segmented; see the summary)."""

SUMMARY_JSON = "summary.json"
CANCELLED_ACTIVITY = "Prediction of the data set"
SUMMARY_CSV = "summary.csv"


@dataclass
class BatchOptions:
    """How to segment: ``predict``'s options plus the batch's own."""

    device: str = "auto"
    overlap: float = 0.5
    batch_size: int = 2
    largest_component: bool | None = None
    """None: the model plan's post-processing; True: every label; False: none (as ``predict``)."""
    tta: bool = False
    overwrite: bool = False
    allow_missing: bool = False
    prefetch: bool = True
    """Read the next case in a background thread while the current one is segmented."""


@dataclass
class CaseRecord:
    """One row of the summary."""

    case_id: str
    status: str
    seconds: float | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    matching: str = ""
    source: str = ""
    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case_id, "status": self.status, "seconds": self.seconds, "volumes_ml": self.volumes_ml,
                "warnings": self.warnings, "error": self.error, "inputs": self.inputs, "missing": self.missing,
                "matching": self.matching, "source": self.source, "output": self.output}


# ------------------------------------------------------------------------------------------- finished cases


def finished_result(folder: Path) -> dict[str, Any] | None:
    """The ``result.json`` of ``folder`` when it is complete (it parses and every file it lists exists), else None."""
    path = folder / "result.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = result.get("files") if isinstance(result, dict) else None
    if not isinstance(files, list) or not all((folder / str(name)).is_file() for name in files):
        return None
    return result


def label_volumes_ml(folder: Path, result: dict[str, Any] | None = None) -> dict[str, float]:
    """Volume of each label in ml, from the label map that ``result.json`` in ``folder`` names."""
    import numpy as np
    import SimpleITK as sitk

    from MultiModalSegLib.imageio import read_image

    result = result if result is not None else json.loads((folder / "result.json").read_text(encoding="utf-8"))
    labelmap = read_image(folder / result["outputs"]["labelmap"])
    voxel_ml = float(np.prod(labelmap.GetSpacing())) / 1000.0
    counts = np.bincount(sitk.GetArrayViewFromImage(labelmap).ravel(), minlength=256)
    return {str(label["name"]): round(float(counts[int(label["value"])]) * voxel_ml, 3)
            for label in result.get("labels", [])}


def _warning_texts(result: dict[str, Any]) -> list[str]:
    """``result.json``'s ``warnings`` as sentences (entries may be strings or objects with a message)."""
    texts = []
    for warning in result.get("warnings") or []:
        texts.append(str(warning.get("message", warning)) if isinstance(warning, dict) else str(warning))
    return texts


# ------------------------------------------------------------------------------------------- the output folder


def check_batch_output(output: Path, data: str, cases: list[PredictionCase], overwrite: bool) -> None:
    """Refuse an output folder that holds someone's inputs, would be read as a case, or holds other files."""
    from MultiModalSegLib.datasets import data_spec_kind

    if output.exists() and not output.is_dir():
        raise MultiModalSegError(f"The output {output} is a file; give a folder.")
    resolved = output.resolve()
    for case in cases:
        for path in case.inputs.values():
            path = path.resolve()
            if path == resolved or resolved in path.parents:
                raise MultiModalSegError(
                    f"The output folder {output} contains the input {path}; choose another output folder so your "
                    "inputs are never overwritten.")
    kind, root, _ = data_spec_kind(data)
    if kind == "folder" and (resolved == root.resolve() or root.resolve() in resolved.parents):
        raise MultiModalSegError(
            f"The output folder {output} lies inside the data folder {root}, where its case folders would be read "
            "as cases next time; choose an output folder outside it.")
    if output.is_dir() and any(output.iterdir()) and not (output / SUMMARY_JSON).is_file() and not overwrite:
        raise MultiModalSegError(
            f"The output folder {output} is not empty and holds no earlier batch run ({SUMMARY_JSON}); choose a new "
            "folder or pass --overwrite.")


def write_summary(output: Path, header: dict[str, Any], records: list[CaseRecord], labels: list[str]) -> None:
    """``summary.json`` (everything) and ``summary.csv`` (one row per case), each written atomically."""
    from MultiModalSegLib.atomic import atomic_write_json, atomic_write_text

    counts = {status: sum(1 for r in records if r.status == status) for status in ("done", "skipped", "failed")}
    atomic_write_json(output / SUMMARY_JSON, {**header, "counts": counts, "cases": [r.to_dict() for r in records]})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "status", "seconds", *[f"volume_ml_{name}" for name in labels], "missing", "warnings",
                     "error", "output"])
    for r in records:
        writer.writerow([r.case_id, r.status, "" if r.seconds is None else f"{r.seconds:.3f}",
                         *["" if name not in r.volumes_ml else f"{r.volumes_ml[name]:.3f}" for name in labels],
                         " ".join(r.missing), " | ".join(r.warnings), r.error or "", r.output or ""])
    atomic_write_text(output / SUMMARY_CSV, buffer.getvalue())


# ------------------------------------------------------------------------------------------- running


def _read_inputs(case: PredictionCase) -> dict[str, Any]:
    from MultiModalSegLib.imageio import read_image

    return {name: read_image(path) for name, path in case.inputs.items()}


def _sentence(error: BaseException) -> str:
    """A failed case's sentence: the user error's own, or an internal error with the traceback on stderr."""
    if isinstance(error, MultiModalSegError):
        return str(error)
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    return f"Internal error ({type(error).__name__}: {error}); please report it with the log."


class _Reader:
    """Reads cases' images in order, one ahead in a background thread when ``prefetch``."""

    def __init__(self, cases: list[PredictionCase], prefetch: bool) -> None:
        self.cases = cases
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmseg-reader") if prefetch else None
        self.futures: dict[int, Future] = {}

    def _submit(self, index: int) -> None:
        if self.pool is not None and index < len(self.cases) and index not in self.futures:
            self.futures[index] = self.pool.submit(_read_inputs, self.cases[index])

    def images(self, index: int) -> dict[str, Any]:
        """Case ``index``'s images (raises what reading raised); starts reading case ``index + 1``."""
        self._submit(index)
        future = self.futures.pop(index, None)
        self._submit(index + 1)
        return future.result() if future is not None else _read_inputs(self.cases[index])

    def close(self) -> None:
        if self.pool is not None:
            for future in self.futures.values():
                future.cancel()
            self.pool.shutdown(wait=True)


def _record_for(case: PredictionCase) -> CaseRecord:
    return CaseRecord(case.case_id, "failed", inputs={k: str(v) for k, v in case.inputs.items()},
                      missing=list(case.missing), matching=case.matching, source=case.source)


def _skipped(record: CaseRecord, folder: Path, result: dict[str, Any]) -> CaseRecord:
    record.status, record.output = "skipped", str(folder.resolve())
    record.seconds = (result.get("timing") or {}).get("total_s")
    record.volumes_ml = label_volumes_ml(folder, result)
    record.warnings = _warning_texts(result)
    return record


def _segment(package: ModelPackage, network: Any, images: dict[str, Any], case: PredictionCase, folder: Path,
             options: BatchOptions, progress: Callable[[int, int], None]) -> dict[str, Any]:
    """Segment one case and write it into ``folder``; return the written ``result.json``."""
    from MultiModalSegLib.inference import predict

    result = predict(package, images, device=options.device, overlap=options.overlap,
                     batch_size=options.batch_size, largest_component=options.largest_component,
                     tta=options.tta, progress=progress, network=network)
    (folder / "result.json").unlink(missing_ok=True)  # until the new one is written, the case is unfinished
    return result.write(folder, inputs={name: str(path.resolve()) for name, path in case.inputs.items()})


def predict_data_set(model: str | Path, data: str, output: Path, options: BatchOptions,
                     reporter: ProgressReporter, token: CancellationToken | None = None) -> dict[str, Any]:
    """Segment every case of ``data`` into ``output``; return the summary (also written as summary.json).

    ``token`` (a :class:`~MultiModalSegLib.training.cancellation.CancellationToken`) is checked after
    every batch of windows and before every case.

    Raises:
        RunCancelled: the token was cancelled; ``summary.json`` lists the cases finished before it
            (with ``"cancelled"``) and the case being segmented keeps what it had before.
        MultiModalSegError: nothing could start (unknown model, unreadable data spec, no case,
            an output folder that must not be written). A failing case never raises.
    """
    from MultiModalSegLib.batch_cases import list_prediction_cases
    from MultiModalSegLib.inference import resolve_device
    from MultiModalSegLib.weights import load_model_package

    started = time.perf_counter()
    output = Path(output)
    package = load_model_package(model)
    cases = list_prediction_cases(data, package.manifest, options.allow_missing)
    check_batch_output(output, data, cases, options.overwrite)
    labels = [str(label["name"]) for label in package.labels]
    model_info = {"id": package.id, "version": package.version, "method": package.method,
                  "folder": str(package.folder)}
    header = {"model": model_info, "data": str(data), "output": str(output.resolve())}

    records: list[CaseRecord] = []
    pending: list[PredictionCase] = []
    plan: list[tuple[PredictionCase, CaseRecord, dict[str, Any] | None, int]] = []
    for case in cases:
        record = _record_for(case)
        previous = finished_result(output / case.case_id) if case.problem is None else None
        if previous is not None and not options.overwrite:
            made_by = previous.get("model") or {}
            if (made_by.get("id"), made_by.get("version")) != (package.id, package.version):
                case.problem = (
                    f"{output / case.case_id} holds a result of model {made_by.get('id')} version "
                    f"{made_by.get('version')}, not of {package.id} version {package.version}; pass --overwrite to "
                    "segment it again, or choose another output folder.")
                previous = None
        elif case.problem is None:
            pending.append(case)
            previous = None
        plan.append((case, record, previous, len(pending) - 1))
    reporter.emit("started", verb="predict", model=str(model), data=str(data), output=str(output.resolve()),
                  cases=len(cases), to_segment=len(pending))
    output.mkdir(parents=True, exist_ok=True)

    network = None
    device = options.device
    if pending:
        device = resolve_device(options.device)
        network = package.build_network(device)
        network.eval()
    options = dataclasses.replace(options, device=device)
    reader = _Reader(pending, options.prefetch)
    segmenting_seconds = 0.0
    reporter.progress("cases", 0, len(cases))
    try:
        for number, (case, record, previous, pending_index) in enumerate(plan, start=1):
            case_started = time.perf_counter()
            if token is not None and token.requested:  # between cases: the summary says where it stopped
                write_summary(output, {**header, "cancelled": {"case": case.case_id}}, records, labels)
                token.check(case.case_id, CANCELLED_ACTIVITY, "case")
            if case.problem is not None:
                record.error = case.problem
            elif previous is not None:
                try:
                    _skipped(record, output / case.case_id, previous)
                except MultiModalSegError as error:  # e.g. its label map was damaged after it was written
                    record.status, record.output = "failed", None
                    record.error = (f"The earlier result in {output / case.case_id} cannot be read ({error}); pass "
                                    "--overwrite to segment the case again.")
            else:
                reporter.restart_stage("inference")
                folder = output / case.case_id
                existed = folder.is_dir()

                def on_windows(done: int, total: int, case_id: str = case.case_id) -> None:
                    reporter.progress("inference", done, total, case=case_id)
                    if token is not None:
                        token.check(case_id, CANCELLED_ACTIVITY, "case")

                try:
                    images = reader.images(pending_index)
                    folder.mkdir(parents=True, exist_ok=True)
                    written = _segment(package, network, images, case, folder, options, on_windows)
                    del images
                    record.status, record.output = "done", str(folder.resolve())
                    record.volumes_ml = label_volumes_ml(folder, written)
                    record.warnings = _warning_texts(written)
                except RunCancelled as cancelled:
                    if not existed and folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()  # nothing of this case was written: leave no empty folder behind
                    write_summary(output, {**header, "cancelled": {"case": case.case_id, "message": str(cancelled)}},
                                  records, labels)
                    raise
                except Exception as error:  # noqa: BLE001 - one case's failure must not stop the others
                    record.error = _sentence(error)
                record.seconds = round(time.perf_counter() - case_started, 3)
                segmenting_seconds += record.seconds
            records.append(record)
            write_summary(output, header, records, labels)
            reporter.emit("case", **record.to_dict())
            reporter.progress("cases", number, len(cases), case=case.case_id)
    finally:
        reader.close()

    counts = {status: sum(1 for r in records if r.status == status) for status in ("done", "skipped", "failed")}
    seconds = time.perf_counter() - started
    summary = {
        **header, "counts": counts, "cases": [r.to_dict() for r in records],
        "failed": [{"case": r.case_id, "error": r.error} for r in records if r.status == "failed"],
        "summary_json": str((output / SUMMARY_JSON).resolve()), "summary_csv": str((output / SUMMARY_CSV).resolve()),
        "seconds": round(seconds, 3), "device": device,
        "cases_per_minute": round(60.0 * counts["done"] / segmenting_seconds, 2) if segmenting_seconds > 0 else None,
    }
    write_summary(output, {**header, "seconds": summary["seconds"], "device": device,
                           "cases_per_minute": summary["cases_per_minute"]}, records, labels)
    return summary


def run_batch_predict(args: argparse.Namespace, reporter: ProgressReporter) -> int:
    """The CLI's ``predict --data``: segment the data set, report, exit 0 or :data:`EXIT_CASES_FAILED`."""
    if not 0.0 <= args.overlap < 1.0:
        raise MultiModalSegError(f"--overlap must be in [0, 1), got {args.overlap}.")
    if args.batch_size < 1:
        raise MultiModalSegError(f"--batch-size must be at least 1, got {args.batch_size}.")
    options = BatchOptions(device=args.device, overlap=args.overlap, batch_size=args.batch_size,
                           largest_component=args.largest_component, tta=args.tta, overwrite=args.overwrite,
                           allow_missing=args.allow_missing)
    with CancellationToken() as token:
        try:
            summary = predict_data_set(args.model, args.data, args.output, options, reporter, token)
        except RunCancelled as cancelled:
            return report_cancelled(reporter, cancelled)
        note_late_cancel(token, reporter, "every case was segmented")
    fields = {key: value for key, value in summary.items() if key != "cases"}
    reporter.result(**fields)
    return EXIT_CASES_FAILED if summary["counts"]["failed"] else 0
