"""The lines a person reads for each event on a terminal (the JSON fields, said in words).

:class:`~MultiModalSegLib.human_progress.HumanProgressReporter` draws progress events as
bars and asks :func:`describe_event` for everything else: a header when a verb starts, the
files ``predict --case`` picked, validation results, warnings, failed cases of a batch, and
a short summary at the end, by verb. Each summary says what was done, how long it took and
where the results are; the JSON ``result`` event (``--json``) keeps every detail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["describe_event", "seconds_text"]


def seconds_text(seconds: Any) -> str:
    """``4.2 s``, ``3.5 min``, ``1.2 h``; ``?`` when unknown."""
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _names(values: Any) -> str:
    return ", ".join(str(v) for v in values) if values else "none"


def _scores(scores: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``liver 0.912, tumor 0.456`` (None shown as ``-``)."""
    if not scores:
        return "-"
    return ", ".join(f"{name} {'-' if value is None else f'{float(value):.{digits}f}'}" for name, value in scores.items())


def _volumes(volumes: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f} ml" for name, value in volumes.items())


# ------------------------------------------------------------------------------------------------ starts


def _started(verb: str | None, record: Mapping[str, Any]) -> list[str]:
    if verb == "predict" and "cases" in record:
        to_do = record.get("to_segment", 0)
        earlier = f", {record['cases'] - to_do} finished or refused before starting" if record["cases"] != to_do else ""
        return [f"Segmenting {record['cases']} cases of {record.get('data')} with {record.get('model')} "
                f"({to_do} to segment{earlier}) into {record.get('output')}"]
    if verb == "predict":
        return [f"Segmenting with {record.get('model')}"]
    if verb == "evaluate":
        missing = f" without {_names(record['missing'])}" if record.get("missing") else ""
        return [f"Evaluating {record.get('model')} on {record.get('data')}{missing}"]
    if verb == "train":
        return [f"Training {record.get('method')} on {record.get('data')} for {record.get('iterations')} iterations "
                f"on {record.get('device')}{' (resuming)' if record.get('resume') else ''} -> {record.get('output')}"]
    if verb == "finetune":
        return [f"Fine-tuning {record.get('model')} v{record.get('version')} on {record.get('labeled')} labeled and "
                f"{record.get('unlabeled')} unlabeled cases for {record.get('iterations')} iterations on "
                f"{record.get('device')}"]
    return []


def _inputs(record: Mapping[str, Any]) -> list[str]:
    """``predict --case``: which file became which modality."""
    lines = [f"Inputs picked in {record.get('folder')} by the model's name patterns:"]
    inputs = record.get("inputs") or {}
    width = max([len(str(name)) for name in [*inputs, *(record.get("missing") or [])]] or [0])
    lines += [f"  {name:<{width}} <- {file}" for name, file in inputs.items()]
    lines += [f"  {name:<{width}} (missing: segmented without it)" for name in record.get("missing") or []]
    if record.get("unused"):
        lines.append(f"  not used: {_names(record['unused'])}")
    return lines


# ------------------------------------------------------------------------------------------------ results


def _predict_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    timing = record.get("timing") or {}
    lines = [f"Done in {seconds_text(timing.get('total_s'))} on {timing.get('device', '?')}: {record.get('output')}"]
    lines.append(f"  modalities used: {_names(record.get('available'))}")
    try:
        from MultiModalSegLib.batch_predict import label_volumes_ml

        volumes = label_volumes_ml(Path(str(record.get("output"))))
    except Exception:  # noqa: BLE001 - the summary is a courtesy; result.json has everything
        volumes = {}
    if volumes:
        lines.append(f"  volumes: {_volumes(volumes)}")
    lines.append(f"  {len(record.get('files') or [])} files, listed in {record.get('result_json')}")
    return lines


def _batch_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    counts = record.get("counts") or {}
    rate = f", {record['cases_per_minute']:.1f} cases/min" if record.get("cases_per_minute") else ""
    lines = [f"{counts.get('done', 0)} segmented, {counts.get('skipped', 0)} skipped (finished earlier), "
             f"{counts.get('failed', 0)} failed, in {seconds_text(record.get('seconds'))}{rate}"]
    for failure in record.get("failed") or []:
        lines.append(f"  failed {failure.get('case')}: {failure.get('error')}")
    lines.append(f"  summary: {record.get('summary_csv')} (and summary.json)")
    return lines


def _evaluate_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    timing = record.get("timing") or {}
    return [f"Evaluated {record.get('n_cases')} cases in {seconds_text(timing.get('seconds'))}; mean Dice: "
            f"{_scores(record.get('mean_dice'))}",
            f"  tables: {record.get('summary_md')}, {record.get('per_case_csv')}"]


def _train_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    best = record.get("best_metric")
    best_text = (f"; best validation mean Dice {best:.3f} at iteration {record.get('best_iteration')}"
                 if isinstance(best, (int, float)) else "")
    lines = [f"Trained {record.get('iterations')} iterations in {seconds_text(record.get('seconds'))}{best_text}"]
    for key in ("best", "last"):
        if record.get(key):
            lines.append(f"  {key} model: {record[key]}")
    lines.append(f"  details: {record.get('result_json')}")
    return lines


def _finetune_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    model = record.get("model") or {}
    return [f"Fine-tuned into {model.get('id')} version {model.get('version')} ({record.get('iterations')} "
            f"iterations, {seconds_text(record.get('seconds'))})",
            f"  model: {model.get('folder')}", f"  details: {record.get('result_json')}"]


def _demo_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    lines = [f"Demo written to {record.get('output')} in {seconds_text(record.get('seconds'))} "
             f"({len(record.get('files') or [])} files)"]
    metrics = record.get("metrics") or {}
    for key, title in (("both_phases", "both phases"), ("arterial_missing", "arterial missing")):
        if metrics.get(key):
            dice = {name: value.get("dice") for name, value in metrics[key].items()}
            lines.append(f"  Dice on {metrics.get('case', 'the demo case')}, {title}: {_scores(dice)}")
    return lines


def _generic_result(record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    if record.get("message"):
        return [str(record["message"])]
    return [f"Done: {record['output']}" if record.get("output") else "Done."]


_RESULTS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]] = {
    "predict": _predict_result, "evaluate": _evaluate_result, "train": _train_result,
    "finetune": _finetune_result, "demo": _demo_result,
}


def describe_event(verb: str | None, record: Mapping[str, Any], started: Mapping[str, Any]) -> list[str]:
    """The lines to print for one non-progress event of ``verb`` (none for bookkeeping events)."""
    event = record.get("event")
    if event == "started":
        return _started(verb, record)
    if event == "inputs":
        return _inputs(record)
    if event == "warning":
        return [f"warning: {record.get('message')}"]
    if event == "error":
        return [f"error: {record.get('message')}"]
    if event == "cancelled":
        return [f"cancelled: {record.get('message') or 'stopped'}"]
    if event == "data":
        return [f"Data: {record.get('labeled')} labeled, {record.get('unlabeled')} unlabeled, "
                f"{record.get('validation')} validation cases; modalities {_names(record.get('modalities'))}; "
                f"labels {_names(record.get('labels'))}"]
    if event == "validation":
        best = " (best so far)" if record.get("best") else ""
        return [f"Validation at iteration {record.get('iteration')}: mean Dice "
                f"{_scores({'': record.get('mean_dice')}).strip()}{best}"]
    if event == "case":
        lines = [f"failed {record.get('case')}: {record.get('error')}"] if record.get("status") == "failed" else []
        return lines + [f"warning {record.get('case')}: {text}" for text in record.get("warnings") or []
                        if record.get("status") == "done"]
    if event == "result":
        if verb == "predict" and "counts" in record:
            return _batch_result(record, started)
        return _RESULTS.get(verb or "", _generic_result)(record, started)
    return []
