"""The panel's behaviour, without Qt: every rule the MultiModalSeg panel follows.

The Qt widget (``MultiModalSeg.py``) forwards each user action to a method here (``select_model``,
``choose_input``, ``apply_or_cancel``, ``select_overlay``, ...) and shows :meth:`PanelController.state`
after each; its timer calls :meth:`PanelController.poll` while a job runs. Only the controller writes
the parameter node (:mod:`.panel_parameters`), so showing a state never changes anything and a
loaded scene changes nothing until the user acts. The scenario tests drive this class on real MRML
nodes with the real backend process.

The rules:

* **Model**: the user's choice stays. Until the user chooses a model or an input, the panel picks
  the model that fits the loaded volumes best (:func:`.input_selection.default_model`), and picks
  again when volumes are added while no row of the current model holds one.
* **Inputs**: the panel fills only its own empty rows, from names; a row the user set, to a volume
  or to "(missing)", is never refilled by re-entering the module or loading volumes. Another model
  (or "Match by names") starts the rows afresh. Vector, DWI and label-map volumes are never inputs.
* **Buttons**: Apply needs a model and usable inputs (at least one; every one where the model
  cannot do without) and no other job; while its job runs it is Cancel. The same for Fine-tune.
  Model, inputs, versions and rollback wait while a job runs.
* **Jobs** (segmentation, fine-tuning, version listing, rollback) run in the backend process:
  Apply -> Cancel -> Apply works; closing the scene stops the job and removes its files; a backend
  error, a declined or failed installation end with one sentence in the status line.
* **Overlays**: choosing one shows it in every slice view (the views' own foreground is remembered);
  "None" and the opacity slider touch only views that show the overlay the panel set, never a
  user's own foreground volume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import backend_jobs, model_catalog, overlay_choices
from .backend_commands import BackendSettings
from .backend_process import EVENT_PROGRESS, EVENT_STDERR, BackendEvent, BackendProcess, BackendStartError, RunState
from .dependencies import DependencyError, DependencyOutcome
from .finetune_cases import FinetuneCases, list_cases, volumes_of_segmentation
from .input_selection import candidate_volumes, default_model, fill_input_rows, is_input_candidate, why_not_an_input
from .model_catalog import ModelChoice
from .module_layout import ModuleLayoutError
from .panel_parameters import (
    INPUT_EMPTIED_BY_USER,
    INPUT_FROM_USER,
    MAX_INPUTS,
    PanelParameters,
    find_or_create_parameter_node,
)
from .panel_state import (
    JOB_FINETUNE,
    JOB_PREDICT,
    JOB_ROLLBACK,
    JOB_VERSIONS,
    NO_MODEL_TEXT,
    Choice,
    PanelState,
    Progress,
    input_rows,
    inputs_note,
    inputs_problem,
)
from .scene_logic import errors as scene_errors
from .scene_logic import overlays, slice_layers

__all__ = ["PanelView", "RunningJob", "PanelController", "USER_ERRORS"]

logger = logging.getLogger(__name__)

USER_ERRORS = (scene_errors.SceneLogicError, backend_jobs.BackendRunError, BackendStartError, DependencyError,
               ModuleLayoutError, ValueError, FileNotFoundError)
"""Errors whose message is a sentence for the user (shown as it is)."""


class PanelView(Protocol):
    """What the controller needs from the panel (the Qt widget in Slicer, a recorder in the tests)."""

    def refresh(self) -> None:
        """Show :meth:`PanelController.state`."""

    def append_log(self, text: str) -> None:
        """Add a line to the log."""

    def show_error(self, text: str, details: str = "") -> None:
        """Tell the user about a failure (a dialog in Slicer); ``details``: the backend's stderr tail."""

    def confirm(self, question: str) -> bool:
        """Ask the user; True for OK."""


@dataclass
class RunningJob:
    """The backend job in progress: its kind, the job object of :mod:`.backend_jobs`, its process and progress."""

    kind: str
    job: Any
    process: BackendProcess
    stage: str = ""
    fraction: float | None = None


class PanelController:
    """The panel's rules over the parameter node, the scene and the backend (see the module docstring).

    ``ensure_dependencies`` checks (and, with the user's consent, installs) the backend's packages;
    ``list_models`` lists the model packages (``model_catalog.list_model_choices``).
    """

    def __init__(self, scene: Any, view: PanelView, settings: BackendSettings,
                 ensure_dependencies: Callable[[], DependencyOutcome],
                 list_models: Callable[[], list[ModelChoice]] = model_catalog.list_model_choices) -> None:
        self.scene = scene
        self.view = view
        self.settings = settings
        self._ensure_dependencies = ensure_dependencies
        self._list_models = list_models
        self.models: list[ModelChoice] = []
        self.parameters: PanelParameters | None = None
        self.job: RunningJob | None = None
        self.status = ""
        self.cases = FinetuneCases()
        self.cases_shown = False
        self.versions: list[backend_jobs.ModelVersion] = []
        self.version_row = -1
        self.versions_shown = False

    # -- module and scene lifecycle ---------------------------------------------------------------------------

    def enter(self) -> None:
        """The module is shown (or the scene was renewed): open the parameter node, list the models, fill."""
        self.parameters = PanelParameters(find_or_create_parameter_node(self.scene))
        self.reload_models()
        if self.job is None:
            self._update_model_and_inputs()
        self.view.refresh()

    def reload_models(self) -> None:
        try:
            self.models = self._list_models()
        except Exception as error:  # a broken model store must not break the panel
            logger.exception("Could not list the model packages")
            self.models = []
            self._log(f"Could not list the model packages: {error}")

    def on_scene_start_close(self) -> None:
        """The scene is closing: stop the job (its inputs and outputs are going away) and let go of the nodes."""
        self.status = ""
        self.discard_job("the scene was closed")
        self.parameters = None
        self.cases, self.versions, self.version_row = FinetuneCases(), [], -1
        self.view.refresh()

    def on_scene_end_close(self, entered: bool) -> None:
        if entered:
            self.enter()
        else:
            self.view.refresh()

    def on_scene_imported(self) -> None:
        """A scene was loaded into this one: read its parameters; apply nothing to the views."""
        if self.parameters is not None:
            self.enter()

    def on_volumes_changed(self) -> None:
        """Volumes were added or removed: fill the panel's empty rows (never the user's)."""
        if self.parameters is not None and self.job is None:
            self._update_model_and_inputs()
            if self.cases_shown:
                self._list_cases()
        self.view.refresh()

    def cleanup(self) -> None:
        """The module is reloaded or Slicer quits: stop the job and remove its files."""
        self.discard_job()

    # -- model and inputs -------------------------------------------------------------------------------------

    def current_model(self) -> ModelChoice | None:
        if self.parameters is None:
            return None
        model_id = self.parameters.get("modelId")
        return next((model for model in self.models if model.model_id == model_id), None)

    def _update_model_and_inputs(self) -> None:
        parameters = self.parameters
        volumes = candidate_volumes(self.scene)
        current = self.current_model()
        user_decided = parameters.get("modelChosenByUser") or parameters.any_input_chosen_by_user()
        holds_a_volume = current is not None and any(
            volume is not None for volume in parameters.input_volumes(len(current.modalities)))
        if current is None or not (user_decided or holds_a_volume):
            best = default_model(self.models, volumes)
            if best is not None and (current is None or best.model_id != current.model_id):
                parameters.set("modelId", best.model_id)
                parameters.set("modelChosenByUser", False)
                parameters.clear_inputs()
                self._forget_versions()
        fill_input_rows(parameters, self.current_model(), volumes)

    def select_model(self, model_id: str) -> None:
        """The user picked a model: it stays; another model's rows start afresh."""
        if self.parameters is None or self.job is not None:
            return self.view.refresh()
        self.parameters.set("modelChosenByUser", True)
        if model_id != self.parameters.get("modelId"):
            self.parameters.set("modelId", model_id)
            self.parameters.clear_inputs()
            fill_input_rows(self.parameters, self.current_model(), candidate_volumes(self.scene))
            self._forget_versions()
            if self.versions_shown:
                self.refresh_versions()
            if self.cases_shown:
                self._list_cases()
        self.view.refresh()

    def choose_input(self, index: int, volume: Any) -> None:
        """The user set input row ``index`` to ``volume`` (None: "(missing)"); the panel will not change it."""
        model = self.current_model()
        rows = min(len(model.modalities), MAX_INPUTS) if model is not None else 0
        if self.parameters is None or self.job is not None or index >= rows:
            return self.view.refresh()
        if volume is not None and not is_input_candidate(volume):
            self.status = f"'{volume.GetName()}' is {why_not_an_input(volume) or 'hidden'}; it cannot be an input."
            return self.view.refresh()
        self.parameters.set_input(index, volume, INPUT_FROM_USER if volume is not None else INPUT_EMPTIED_BY_USER)
        self.view.refresh()

    def match_inputs(self) -> None:
        """"Match by names": forget every choice and fill all rows from the volume names again."""
        if self.parameters is None or self.job is not None:
            return self.view.refresh()
        self.parameters.clear_inputs()
        fill_input_rows(self.parameters, self.current_model(), candidate_volumes(self.scene))
        self.view.refresh()

    def set_option(self, name: str, value: Any) -> None:
        """``device``, ``overlap``, ``outputSegmentation`` or ``finetuneIterations``, as the user set it."""
        if self.parameters is None or name not in ("device", "overlap", "outputSegmentation", "finetuneIterations"):
            return
        self.parameters.set(name, value)
        self.view.refresh()

    def selected_inputs(self, model: ModelChoice) -> dict[str, Any]:
        """Modality -> selected volume node (None: missing)."""
        volumes = self.parameters.input_volumes(len(model.modalities))
        return dict(zip(model.modality_names, volumes))

    # -- jobs -------------------------------------------------------------------------------------------------

    def _model_for_new_job(self, kind: str) -> ModelChoice | None:
        """The model to start a ``kind`` job with; None while a job runs (a running ``kind`` job is cancelled:
        the button is its Cancel)."""
        if self.job is not None:
            if self.job.kind == kind:
                self.cancel_job()
            return None
        return self.current_model()

    def apply_or_cancel(self) -> None:
        """Apply: segment with the chosen model and inputs. Cancel while the segmentation runs."""
        model = self._model_for_new_job(JOB_PREDICT)
        if model is None:
            return
        problem = self._inputs_problem(model)
        if problem:
            self.status = problem
            return self.view.refresh()
        if not self._dependencies_ready():
            return
        parameters = self.parameters
        self._start_job(JOB_PREDICT, lambda: backend_jobs.start_predict(
            self.settings, model.model_id, self.selected_inputs(model), device=parameters.get("device"),
            overlap=parameters.get("overlap"), segmentation_node=parameters.get("outputSegmentation")))

    def _inputs_problem(self, model: ModelChoice | None) -> str:
        volumes = self.parameters.input_volumes(len(model.modalities) if model is not None else 0)
        unusable = {index: why_not_an_input(volume) for index, volume in enumerate(volumes)
                    if volume is not None and why_not_an_input(volume)}
        return inputs_problem(model, volumes, unusable)

    def _dependencies_ready(self) -> bool:
        """Check (and with consent install) the backend's packages; a sentence in the panel when not ready."""
        try:
            outcome = self._ensure_dependencies()
        except DependencyError as error:
            message = str(error)
        else:
            if outcome.ready:
                return True
            message = outcome.message
        self.status = message
        self._log(message)
        self.view.refresh()
        return False

    def _start_job(self, kind: str, start: Callable[[], Any]) -> None:
        try:
            job = start()
        except USER_ERRORS as error:
            return self._report_failure(str(error))
        except Exception as error:
            logger.exception(f"MultiModalSeg could not start the {kind} job")
            return self._report_failure(f"Could not start: {error}. See the Python console for details.")
        process = job if isinstance(job, BackendProcess) else job.process
        self.job = RunningJob(kind, job, process)
        if kind != JOB_VERSIONS:  # listing versions is no news: the last outcome stays in the status line
            self.status = f"Running the {process.description}..."
            self._log(f"Started the {process.description}.")
        self.view.refresh()

    def cancel_job(self) -> None:
        """Ask the job to stop; :meth:`poll` notices when it has (the panel never blocks)."""
        if self.job is not None and self.job.process.is_running():
            self.job.process.request_cancel()
            self.status = "Cancelling..."
            self._log(self.status)
            self.view.refresh()

    def discard_job(self, reason: str = "the module was closed") -> None:
        """Stop the job at once and remove its files (scene closing, module reloading)."""
        job, self.job = self.job, None
        if job is None:
            return
        try:
            if isinstance(job.job, BackendProcess):
                if job.process.is_running():
                    job.process.cancel()
            else:
                backend_jobs.discard_job(job.job)
        except Exception:
            logger.exception("MultiModalSeg could not stop its background job")
        self.status = f"Stopped the {job.process.description}: {reason}."
        self._log(self.status)

    def poll(self) -> None:
        """Read the job's events; finish it when it has ended. The widget's timer calls this."""
        job = self.job
        if job is None:
            return
        for event in job.process.poll_events():
            self._show_event(job, event)
        if job.process.is_finished():
            self.job = None
            self._finish(job)
        self.view.refresh()

    def _show_event(self, job: RunningJob, event: BackendEvent) -> None:
        if event.event == EVENT_PROGRESS:
            job.fraction = event.fraction()
            if event.stage != job.stage:
                job.stage = event.stage
                self._log(f"{event.stage}...")
        elif event.event != EVENT_STDERR or event.line.strip():
            self._log(event.describe())

    def _finish(self, job: RunningJob) -> None:
        outcome = job.process.outcome()
        try:
            if job.kind == JOB_PREDICT:
                loaded = backend_jobs.finish_predict(self.scene, job.job)
                slice_layers.show_background(self.scene, loaded.background_volume)
                if self.parameters is not None:
                    self.parameters.set("outputSegmentation", loaded.segmentation)
                if self.cases_shown:
                    self._list_cases()
                seconds = ((outcome.result or {}).get("timing") or {}).get("total_s")
                self._done("Segmentation finished" + (f" in {seconds:.1f} s." if seconds else "."))
            elif job.kind == JOB_FINETUNE:
                result = backend_jobs.finish_finetune(job.job)
                self._done(backend_jobs.describe_finetune_result(result, job.job.model))
                self.reload_models()
                self.refresh_versions()
            elif job.kind == JOB_VERSIONS:
                self.versions, self.version_row = backend_jobs.finish_list_versions(job.job), -1
            elif job.kind == JOB_ROLLBACK:
                self._done(backend_jobs.finish_rollback(job.job))
                self.reload_models()
                self.refresh_versions()
        except backend_jobs.BackendRunError as error:
            if outcome is not None and outcome.state == RunState.CANCELLED:
                self._done("Cancelled.")
            else:
                self._report_failure(str(error), outcome.stderr_tail if outcome is not None else "")
        except USER_ERRORS as error:
            self._report_failure(str(error))
        except Exception as error:
            logger.exception("MultiModalSeg could not read the backend's result")
            self._report_failure(f"Could not read the result: {error}. See the Python console for details.")

    def _done(self, message: str) -> None:
        self.status = message
        self._log(message)

    def _report_failure(self, message: str, details: str = "") -> None:
        self._done(message)
        self.view.show_error(message, details)
        self.view.refresh()

    def _log(self, text: str) -> None:
        self.view.append_log(text)

    # -- overlays ---------------------------------------------------------------------------------------------

    def select_overlay(self, node_id: str) -> None:
        """Show the overlay ``node_id`` in the slice views ("": hide the panel's overlay)."""
        if self.parameters is None:
            return
        node = self.scene.GetNodeByID(node_id) if node_id else None
        try:
            if node is not None:
                slice_layers.show_overlay(self.scene, node, self.parameters.get("overlayOpacity"))
            else:
                slice_layers.hide_overlay(self.scene)
        except scene_errors.SceneLogicError as error:
            self.status = str(error)
            return self.view.refresh()
        self.parameters.set("overlayVolume", node)
        self.view.refresh()

    def set_overlay_opacity(self, opacity: float) -> None:
        """The user moved the opacity slider: only views showing the panel's overlay change."""
        if self.parameters is None:
            return
        self.parameters.set("overlayOpacity", opacity)
        slice_layers.set_overlay_opacity(self.scene, self.parameters.get("overlayVolume"), opacity)
        self.view.refresh()

    # -- fine-tuning ------------------------------------------------------------------------------------------

    def set_cases_shown(self, shown: bool) -> None:
        """The Fine-tune section was opened or closed: list the cases when it opens."""
        self.cases_shown = shown
        if shown:
            self.refresh_cases()

    def refresh_cases(self) -> None:
        if self.parameters is not None:
            self._list_cases()
        self.view.refresh()

    def _list_cases(self) -> None:
        model = self.current_model()
        inputs = self.selected_inputs(model) if model is not None else {}
        self.cases = list_cases(self.scene, model, candidate_volumes(self.scene),
                                self.parameters.get("outputSegmentation"), inputs)

    def set_case_checked(self, labeled: bool, row: int, checked: bool) -> None:
        rows = self.cases.labeled if labeled else self.cases.unlabeled
        if 0 <= row < len(rows):
            rows[row].checked = bool(checked)
        self.view.refresh()

    def finetune_or_cancel(self) -> None:
        """Fine-tune the model on the checked cases; Cancel while fine-tuning runs."""
        model = self._model_for_new_job(JOB_FINETUNE)
        if model is None:
            return
        volumes = candidate_volumes(self.scene)
        inputs = self.selected_inputs(model)
        output = self.parameters.get("outputSegmentation")
        labeled = []
        for row in self.cases.labeled:
            node = self.scene.GetNodeByID(row.node_id) if row.checked else None
            if node is not None:
                labeled.append(backend_jobs.LabeledCase(case_id=node.GetName(), segmentation_node=node, volume_nodes=(
                    volumes_of_segmentation(self.scene, node, model, volumes, output, inputs))))
        if not labeled:
            self.status = "Check at least one corrected segmentation to fine-tune on."
            return self.view.refresh()
        unlabeled = [backend_jobs.UnlabeledCase(case_id=row.candidate.name, volume_nodes={
                         modality: self.scene.GetNodeByID(volume_id)
                         for modality, volume_id in row.candidate.volumes.items()})
                     for row in self.cases.unlabeled if row.checked and row.candidate is not None]
        if not self._dependencies_ready():
            return
        parameters = self.parameters
        self._start_job(JOB_FINETUNE, lambda: backend_jobs.start_finetune(
            self.scene, self.settings, model.model_id, list(model.label_entries), labeled, unlabeled,
            reference_modality=model.reference_modality, iterations=parameters.get("finetuneIterations"),
            device=parameters.get("device")))

    # -- versions ---------------------------------------------------------------------------------------------

    def set_versions_shown(self, shown: bool) -> None:
        """The Model versions section was opened or closed: list the versions when it opens."""
        self.versions_shown = shown
        if shown and not self.versions:
            self.refresh_versions()

    def _forget_versions(self) -> None:
        self.versions, self.version_row = [], -1

    def refresh_versions(self) -> None:
        model = self.current_model()
        if model is None or self.job is not None:
            return self.view.refresh()
        self._start_job(JOB_VERSIONS, lambda: backend_jobs.start_list_versions(self.settings, model.model_id))

    def select_version(self, row: int) -> None:
        self.version_row = row if 0 <= row < len(self.versions) else -1
        self.view.refresh()

    def rollback(self) -> None:
        """Make the selected version current again (after the user confirms); newer versions are kept."""
        model = self.current_model()
        version = self.versions[self.version_row] if 0 <= self.version_row < len(self.versions) else None
        if model is None or version is None or version.current or self.job is not None:
            return
        if not self.view.confirm(f"Make version {version.version} of {model.model_id} the current one? "
                                 "Newer versions are kept."):
            return
        self._start_job(JOB_ROLLBACK, lambda: backend_jobs.start_rollback(self.settings, model.model_id,
                                                                          version.version))

    # -- what the panel shows ---------------------------------------------------------------------------------

    def state(self) -> PanelState:
        """Everything the panel shows now (computed from the parameter node, the scene and the job)."""
        parameters, model, job = self.parameters, self.current_model(), self.job
        kind = job.kind if job is not None else ""
        idle = job is None and parameters is not None
        models = tuple(Choice(choice.display_name(), choice.model_id) for choice in self.models)
        if parameters is None:
            return PanelState(models=models, model_enabled=False, inputs_enabled=False, status=self.status,
                              input_rows=input_rows(None, []))
        volumes = parameters.input_volumes()
        problem = self._inputs_problem(model)
        shown = slice_layers.shown_overlay(self.scene)
        overlay_nodes = overlays.list_overlays(self.scene)
        choices = overlay_choices.overlay_choices(
            (node.GetID(), overlays.overlay_key_of(node), node.GetName()) for node in overlay_nodes)
        version = self.versions[self.version_row] if 0 <= self.version_row < len(self.versions) else None
        output = parameters.get("outputSegmentation")
        return PanelState(
            models=models,
            model_id=model.model_id if model is not None else "",
            model_summary=model.summary_html() if model is not None else NO_MODEL_TEXT,
            model_enabled=idle,
            input_rows=input_rows(model, volumes),
            inputs_enabled=idle,
            inputs_note=inputs_note(model),
            match_enabled=idle and model is not None,
            device=parameters.get("device"),
            overlap=parameters.get("overlap"),
            output_segmentation_id=output.GetID() if output is not None else "",
            apply_text="Cancel" if kind == JOB_PREDICT else "Apply",
            apply_enabled=kind == JOB_PREDICT or (idle and not problem),
            apply_tooltip=problem or "Segment the inputs with the model (in the background; Cancel stops it).",
            progress=self._progress(JOB_PREDICT),
            overlays=(Choice(overlay_choices.NO_OVERLAY_TEXT, ""),) + tuple(
                Choice(choice.text, choice.node_id) for choice in choices),
            overlay_id=shown.GetID() if shown is not None else "",
            overlay_enabled=bool(choices),
            overlay_opacity=parameters.get("overlayOpacity"),
            labeled_cases=tuple(Choice(row.text, row.node_id, row.checked) for row in self.cases.labeled),
            unlabeled_cases=tuple(Choice(row.text, str(index), row.checked)
                                  for index, row in enumerate(self.cases.unlabeled)),
            finetune_iterations=parameters.get("finetuneIterations"),
            finetune_text="Cancel" if kind == JOB_FINETUNE else "Fine-tune",
            finetune_enabled=kind == JOB_FINETUNE or (idle and model is not None
                                                      and any(row.checked for row in self.cases.labeled)),
            finetune_progress=self._progress(JOB_FINETUNE),
            versions=tuple(Choice(item.describe(), str(item.version)) for item in self.versions),
            version_row=self.version_row,
            refresh_versions_enabled=idle and model is not None,
            rollback_enabled=idle and version is not None and not version.current,
            status=self.status,
            polling=job is not None,
        )

    def _progress(self, kind: str) -> Progress:
        job = self.job
        if job is None or job.kind != kind:
            return Progress()
        value = round(100 * job.fraction) if job.fraction is not None else 0
        return Progress(True, value, f"{job.stage or 'starting'} %p%")
