"""The panel's four jobs, without Qt: segment, fine-tune, list versions, roll back.

Each job is "write the inputs, start the backend, later read its outputs":

* :func:`start_predict` exports the input volume nodes to NIfTI in a new temporary folder
  (scene logic: ``volume_files.export_volume_node``) and starts ``predict``;
  :func:`finish_predict` loads the output folder into the scene (scene logic:
  ``result_loader.load_result``) and removes the temporary folder.
* :func:`start_finetune` exports the labeled and unlabeled cases (scene logic:
  ``finetune_export.export_finetune_cases``) and starts ``finetune``; :func:`finish_finetune`
  returns the backend's result (the new model version) and removes the files.
* :func:`start_list_versions` / :func:`finish_list_versions` and :func:`start_rollback` /
  :func:`finish_rollback` run ``models --versions`` and ``models --rollback``.

The Slicer panel calls ``start_*``, polls ``job.process`` from a timer and calls ``finish_*``;
the self-tests and pytest call :func:`run_to_end` in between. So both run this one code.
A failed or cancelled run raises :class:`BackendRunError` from ``finish_*`` with the
sentence to show; its temporary files are removed either way.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backend_commands import (
    BackendSettings,
    finetune_arguments,
    predict_arguments,
    rollback_arguments,
    versions_arguments,
)
from .backend_process import BackendEvent, BackendOutcome, BackendProcess, BackendStartError, make_work_folder
from .scene_logic import errors, finetune_export, result_loader, volume_files

__all__ = [
    "BackendRunError",
    "PredictJob",
    "FinetuneJob",
    "ModelVersion",
    "start_predict",
    "finish_predict",
    "start_finetune",
    "finish_finetune",
    "new_version_of",
    "describe_finetune_result",
    "start_list_versions",
    "finish_list_versions",
    "start_rollback",
    "finish_rollback",
    "run_to_end",
    "discard_job",
]

LabeledCase = finetune_export.LabeledCase
UnlabeledCase = finetune_export.UnlabeledCase


class BackendRunError(RuntimeError):
    """A backend run failed or was cancelled; the message is the sentence for the user."""

    def __init__(self, message: str, outcome: BackendOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class PredictJob:
    """A running ``predict``: its process, folders and the scene nodes it will fill."""

    process: BackendProcess
    model: str
    work_dir: Path
    output_dir: Path
    input_volume_nodes: dict[str, Any]
    segmentation_node: Any | None = None


@dataclass
class FinetuneJob:
    """A running ``finetune``: its process and folders."""

    process: BackendProcess
    model: str
    work_dir: Path
    output_dir: Path
    case_lists: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    """One entry of ``models --versions --json`` (``model_version`` events)."""

    model_id: str
    version: int
    current: bool
    source: str
    created: str | None = None
    fine_tuned_from: str | None = None

    @classmethod
    def from_event(cls, fields: Mapping[str, Any]) -> ModelVersion:
        parent = fields.get("fine_tuned_from")
        return cls(
            model_id=str(fields.get("id", "")),
            version=int(fields.get("version", 0)),
            current=bool(fields.get("current", False)),
            source=str(fields.get("source", "")),
            created=fields.get("created"),
            fine_tuned_from=(f"{parent.get('id')} v{parent.get('version')}" if isinstance(parent, dict) else None),
        )

    def describe(self) -> str:
        """One line for the versions list."""
        parts = [f"v{self.version}", "bundled" if self.source == "bundled" else "fine-tuned"]
        if self.created:
            parts.append(str(self.created)[:16].replace("T", " "))
        if self.fine_tuned_from:
            parts.append(f"from {self.fine_tuned_from}")
        text = " · ".join(parts)
        return f"{text}  (current)" if self.current else text


def _safe_file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _start(process: BackendProcess) -> BackendProcess:
    try:
        return process.start()
    except BackendStartError:
        process.remove_temporary_paths()
        raise


def _require_success(process: BackendProcess, what: str) -> BackendOutcome:
    outcome = process.outcome()
    if outcome is None:
        raise RuntimeError(f"The {what} is still running; wait for it to finish before reading its result.")
    if not outcome.succeeded:
        raise BackendRunError(outcome.error_message or f"The {what} failed; see the log.", outcome)
    return outcome


def discard_job(job: PredictJob | FinetuneJob) -> None:
    """Cancel a job if it still runs and remove its temporary files (panel closed, scene cleared)."""
    if job.process.is_running():
        job.process.cancel()
    job.process.remove_temporary_paths()


def run_to_end(job: Any, timeout: float | None = None,
               on_event: Callable[[BackendEvent], None] | None = None) -> BackendOutcome:
    """Block until ``job`` (a job or a bare :class:`BackendProcess`) ends; for self-tests and scripts."""
    process = job if isinstance(job, BackendProcess) else job.process
    return process.wait(timeout=timeout, on_event=on_event)


# -- predict --------------------------------------------------------------------------------------------------


def start_predict(
    settings: BackendSettings,
    model: str,
    volume_nodes: Mapping[str, Any | None],
    device: str = "auto",
    overlap: float = 0.5,
    segmentation_node: Any | None = None,
) -> PredictJob:
    """Export the input volumes and start ``predict``; modalities mapped to None are left out
    (the model treats them as missing). ``segmentation_node``: where the result goes (None: a
    new segmentation node)."""
    volumes = {modality: node for modality, node in volume_nodes.items() if node is not None}
    if not volumes:
        raise errors.SceneLogicError("No input volume is selected; select the volume of at least one modality.")
    work_dir = make_work_folder(settings.work_parent)
    try:
        inputs = {modality: volume_files.export_volume_node(
                      node, work_dir / "inputs" / f"{_safe_file_stem(modality)}.nii.gz")
                  for modality, node in volumes.items()}
    except Exception:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    output_dir = work_dir / "output"
    process = BackendProcess(
        settings.command(predict_arguments(model, inputs, output_dir, device=device, overlap=overlap)),
        environment=settings.environment(), temporary_paths=[work_dir], description=f"segmentation with {model}")
    _start(process)
    return PredictJob(process=process, model=model, work_dir=work_dir, output_dir=output_dir,
                      input_volume_nodes=volumes, segmentation_node=segmentation_node)


def finish_predict(scene: Any, job: PredictJob) -> Any:
    """Load the finished ``predict`` output into ``scene``; returns the scene logic's ``LoadedResult``.

    The temporary folder is removed afterwards (the outputs are in the scene then), also
    when the run failed or loading raised.
    """
    try:
        _require_success(job.process, "segmentation")
        return result_loader.load_result(scene, job.output_dir, input_volume_nodes=job.input_volume_nodes,
                                         segmentation_node=job.segmentation_node)
    finally:
        job.process.remove_temporary_paths()


# -- fine-tune ------------------------------------------------------------------------------------------------


def _split_case_list(case_list: Path) -> dict[str, Path]:
    """Write ``labeled.json`` and ``unlabeled.json`` beside the scene logic's mixed ``cases.json``
    (``--labeled`` and ``--unlabeled`` take one list each; paths inside are absolute)."""
    entries = json.loads(case_list.read_text(encoding="utf-8"))
    lists: dict[str, Path] = {}
    for kind, selected in (("labeled", [e for e in entries if e.get("label")]),
                           ("unlabeled", [e for e in entries if not e.get("label")])):
        if selected:
            path = case_list.with_name(f"{kind}.json")
            path.write_text(json.dumps(selected, indent=2), encoding="utf-8")
            lists[kind] = path
    return lists


def start_finetune(
    scene: Any,
    settings: BackendSettings,
    model: str,
    labels: Sequence[Mapping[str, Any]],
    labeled_cases: Sequence[LabeledCase],
    unlabeled_cases: Sequence[UnlabeledCase] = (),
    reference_modality: str | None = None,
    iterations: int | None = None,
    device: str = "auto",
    patch_size: tuple[int, int, int] | None = None,
) -> FinetuneJob:
    """Export the cases (scene logic) and start ``finetune`` on them.

    ``labels`` are the model's manifest labels: segments are matched to them by name.
    ``patch_size`` (z, y, x): None trains on the package's patch size.
    """
    work_dir = make_work_folder(settings.work_parent)
    try:
        case_list = finetune_export.export_finetune_cases(
            scene, work_dir / "cases", labels, labeled_cases, unlabeled_cases, reference_modality=reference_modality)
        lists = _split_case_list(case_list)
    except Exception:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    output_dir = work_dir / "output"
    arguments = finetune_arguments(model, lists["labeled"], output_dir, unlabeled_cases=lists.get("unlabeled"),
                                   iterations=iterations, device=device, patch_size=patch_size)
    process = BackendProcess(settings.command(arguments), environment=settings.environment(),
                             temporary_paths=[work_dir], description=f"fine-tuning of {model}")
    _start(process)
    return FinetuneJob(process=process, model=model, work_dir=work_dir, output_dir=output_dir, case_lists=lists)


def finish_finetune(job: FinetuneJob) -> dict[str, Any]:
    """The backend's ``result`` of a finished fine-tuning; removes the temporary files.

    The result names the new version as ``{"model": {"id": ..., "version": ...}, "fine_tuned_from": ...,
    "iterations": ..., "seconds": ...}`` (``MultiModalSegLib/training/finetune.py``).
    """
    try:
        return dict(_require_success(job.process, "fine-tuning").result or {})
    finally:
        job.process.remove_temporary_paths()


def new_version_of(result: Mapping[str, Any]) -> tuple[str, int] | None:
    """``(model id, version)`` of the version a fine-tuning wrote, None if the result does not say."""
    model = result.get("model")
    if isinstance(model, Mapping) and model.get("version") is not None:
        return str(model.get("id", "")), int(model["version"])
    return None


def describe_finetune_result(result: Mapping[str, Any], model: str) -> str:
    """One sentence for the panel: which version is current now, after how many iterations."""
    new_version = new_version_of(result)
    details = []
    if result.get("iterations") is not None:
        details.append(f"{result['iterations']} iterations")
    if result.get("seconds") is not None:
        details.append(f"{float(result['seconds']):.0f} s")
    suffix = f" ({', '.join(details)})" if details else ""
    if new_version is None:
        return f"Fine-tuning of {model} finished{suffix}."
    return f"Fine-tuning finished{suffix}: {new_version[0] or model} version {new_version[1]} is now current."


# -- versions and rollback ------------------------------------------------------------------------------------


def start_list_versions(settings: BackendSettings, model_id: str | None = None) -> BackendProcess:
    """Start ``models --versions [ID] --json``."""
    return _start(BackendProcess(settings.command(versions_arguments(model_id)), environment=settings.environment(),
                                 description="model versions"))


def finish_list_versions(process: BackendProcess) -> list[ModelVersion]:
    """The versions a finished ``models --versions`` listed, in its order."""
    outcome = _require_success(process, "version listing")
    return [ModelVersion.from_event(record.fields) for record in outcome.records if record.event == "model_version"]


def start_rollback(settings: BackendSettings, model_id: str, version: int) -> BackendProcess:
    """Start ``models --rollback ID VERSION``."""
    return _start(BackendProcess(settings.command(rollback_arguments(model_id, version)),
                                 environment=settings.environment(), description=f"rollback of {model_id}"))


def finish_rollback(process: BackendProcess) -> str:
    """The sentence a finished rollback reported (for example 'm version 1 is now current.')."""
    outcome = _require_success(process, "rollback")
    return str((outcome.result or {}).get("message", "The model version was changed."))
