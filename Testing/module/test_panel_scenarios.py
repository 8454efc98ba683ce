"""The panel's rules, driven headless as a user would drive the panel: real MRML nodes (slicer-core),
the real sample data and model manifests, the real backend in its own process.

The Qt widget cannot run here (it needs the Slicer application); it forwards each user action to the
same controller methods these scenarios call, and shows the state they check (``panel_testing``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from module_testing import REPOSITORY, TINY_MODEL_ID
from panel_testing import RecordingInstaller, RecordingView, run_until_idle
from slicer.util import updateVolumeFromArray

from MultiModalSeg.MultiModalSegModuleLib import model_catalog, sample_data, self_test_steps
from MultiModalSeg.MultiModalSegModuleLib.backend_commands import BackendSettings
from MultiModalSeg.MultiModalSegModuleLib.dependencies import (
    DependencyOutcome,
    DependencyState,
    ensure_backend_dependencies,
)
from MultiModalSeg.MultiModalSegModuleLib.panel_controller import PanelController
from MultiModalSeg.MultiModalSegModuleLib.panel_parameters import INPUT_EMPTIED_BY_USER
from MultiModalSeg.MultiModalSegSceneLib.headless import create_headless_slicer
from MultiModalSeg.MultiModalSegSceneLib.scene_files import load_scene, save_scene
from MultiModalSeg.MultiModalSegSceneLib.slice_layers import slice_composite_nodes
from MultiModalSeg.MultiModalSegSceneLib.slice_views import slice_logics_for_views

SAMPLE_DATA_DIR = REPOSITORY / "Resources" / "SampleData"
BUNDLED_MODELS = REPOSITORY / "Resources" / "Models"
LIVER = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")
BRAIN = sample_data.sample_case_by_name("MultiModalSegBrainPhantom")

pytestmark = pytest.mark.skipif(not LIVER.is_available(SAMPLE_DATA_DIR), reason="Resources/SampleData is missing")


def ready() -> DependencyOutcome:
    return DependencyOutcome(DependencyState.READY)


class Panel:
    """A headless Slicer scene with slice views, the controller and its recording view."""

    def __init__(self, settings: BackendSettings, models_dir: Path, ensure_dependencies=ready) -> None:
        self.context = create_headless_slicer()
        self.scene = self.context.scene
        slice_logics_for_views(self.scene, self.context.application_logic)
        self.view = RecordingView()
        self.controller = PanelController(
            self.scene, self.view, settings, ensure_dependencies,
            list_models=lambda: model_catalog.list_model_choices(search_paths=[models_dir]))
        self.view.controller = controller = self.controller
        # What the widget's scene observers do.
        self.observers = [
            self.scene.AddObserver(self.scene.StartCloseEvent, lambda *unused: controller.on_scene_start_close()),
            self.scene.AddObserver(self.scene.EndCloseEvent, lambda *unused: controller.on_scene_end_close(True))]
        controller.enter()

    def close(self) -> None:
        """What the widget's cleanup does: stop a job, drop the observers (before the scene goes)."""
        self.controller.cleanup()
        for tag in self.observers:
            self.scene.RemoveObserver(tag)

    @property
    def state(self):
        return self.controller.state()

    def load(self, case: sample_data.SampleCase) -> dict:
        volumes = self_test_steps.load_sample_case(self.scene, case, SAMPLE_DATA_DIR)
        self.controller.on_volumes_changed()
        return volumes

    def add_volume(self, name: str, node_class: str = "vtkMRMLScalarVolumeNode", components: int = 1):
        node = self.scene.AddNewNodeByClass(node_class, name)
        shape = (4, 8, 8) if components == 1 else (4, 8, 8, components)
        updateVolumeFromArray(node, np.zeros(shape, dtype=np.int16))
        self.controller.on_volumes_changed()
        return node

    def row_ids(self) -> list[str]:
        return [row.node_id for row in self.state.input_rows if row.visible]


@pytest.fixture()
def settings(backend_settings: BackendSettings) -> BackendSettings:
    return backend_settings


@pytest.fixture()
def make_panel():
    """Panels made in a test, closed after it."""
    panels: list[Panel] = []

    def make(*arguments, **keywords) -> Panel:
        panels.append(Panel(*arguments, **keywords))
        return panels[-1]

    yield make
    for panel in panels:
        panel.close()


@pytest.fixture()
def tiny_panel(settings: BackendSettings, make_panel) -> Panel:
    panel = make_panel(settings, settings.bundled_models)
    panel.controller.set_option("overlap", 0.0)  # fewer windows: a shorter real run
    return panel


def work_folders(settings: BackendSettings) -> list[Path]:
    return list(settings.work_parent.iterdir()) if settings.work_parent.exists() else []


# -- which model, which volumes ---------------------------------------------------------------------------------


def test_the_default_model_is_the_one_that_fits_the_loaded_volumes(settings: BackendSettings, make_panel) -> None:
    """With the bundled manifests: liver phases pick the liver model, four MR sequences the brain model
    (it used to be the first alphabetically, dtc-atrium-mr); a model the user picked stays."""
    panel = make_panel(settings, BUNDLED_MODELS)
    assert panel.state.model_id == "dtc-atrium-mr"  # nothing loaded: the catalog's first
    assert not panel.state.apply_enabled and "Select at least one input volume" in panel.state.apply_tooltip

    volumes = panel.load(LIVER)
    assert panel.state.model_id == "maml-liver-ct2"
    assert panel.row_ids() == [volumes["arterial"].GetID(), volumes["venous"].GetID()]
    assert panel.state.apply_enabled

    panel.scene.Clear(0)
    volumes = panel.load(BRAIN)
    assert panel.state.model_id == "maml-brain-mr4"
    assert panel.row_ids() == [volumes[m].GetID() for m in ("t1", "t1ce", "t2", "flair")]

    panel.controller.select_model("maml-brain-tissue-mr3")
    panel.load(LIVER)
    assert panel.state.model_id == "maml-brain-tissue-mr3"  # the user's choice survives new volumes


def test_a_row_the_user_cleared_stays_empty_and_apply_leaves_that_modality_out(tiny_panel: Panel) -> None:
    panel, controller = tiny_panel, tiny_panel.controller
    volumes = panel.load(LIVER)
    controller.choose_input(0, None)  # MAML with the arterial phase missing
    assert panel.row_ids() == ["", volumes["venous"].GetID()]
    assert controller.parameters.input_origin(0) == INPUT_EMPTIED_BY_USER

    controller.enter()  # re-entering the module
    panel.add_volume("case2_arterial")  # and loading another arterial phase
    assert panel.row_ids() == ["", volumes["venous"].GetID()]

    controller.apply_or_cancel()
    assert set(controller.job.job.input_volume_nodes) == {"venous"}
    controller.apply_or_cancel()  # Cancel
    assert run_until_idle(controller).status == "Cancelled."

    controller.match_inputs()  # "Match by names" is the user asking for a fresh match
    assert panel.row_ids()[0] == volumes["arterial"].GetID()


def test_rows_the_panel_filled_refill_and_a_users_deleted_volume_frees_its_row(tiny_panel: Panel) -> None:
    panel, controller = tiny_panel, tiny_panel.controller
    volumes = panel.load(LIVER)
    other = panel.add_volume("followup_venous")
    controller.choose_input(1, other)
    panel.scene.RemoveNode(volumes["arterial"])  # a row the panel filled
    controller.on_volumes_changed()
    assert panel.row_ids() == ["", other.GetID()]
    replacement = panel.add_volume("new_arterial")
    assert panel.row_ids() == [replacement.GetID(), other.GetID()]

    panel.scene.RemoveNode(other)  # the user's volume is gone: the row is the panel's again
    controller.on_volumes_changed()
    assert panel.row_ids() == [replacement.GetID(), volumes["venous"].GetID()]


def test_vector_dwi_and_label_volumes_are_never_inputs(tiny_panel: Panel) -> None:
    """The selectors cannot show them, so the panel must not pick them (Apply used to fail on a hidden check)."""
    panel, controller = tiny_panel, tiny_panel.controller
    vector = panel.add_volume("case_arterial", "vtkMRMLVectorVolumeNode", components=3)
    panel.add_volume("case_venous", "vtkMRMLDiffusionWeightedVolumeNode")
    panel.add_volume("case_ven_label", "vtkMRMLLabelMapVolumeNode")
    assert panel.row_ids() == ["", ""] and not panel.state.apply_enabled

    controller.choose_input(0, vector)
    assert panel.row_ids() == ["", ""]
    assert panel.state.status == "'case_arterial' is a vector (color) volume; it cannot be an input."

    venous = panel.add_volume("scan_venous")
    assert panel.row_ids() == ["", venous.GetID()] and panel.state.apply_enabled

    controller.parameters.set_input(0, vector, "user")  # as a scene saved elsewhere could hold it
    assert not panel.state.apply_enabled
    assert panel.state.apply_tooltip.startswith("The arterial input is a vector (color) volume;")


# -- jobs -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_apply_cancel_apply_then_fine_tune_and_versions(tiny_panel: Panel, settings: BackendSettings) -> None:
    panel, controller = tiny_panel, tiny_panel.controller
    volumes = panel.load(LIVER)
    controller.apply_or_cancel()
    running = panel.state
    assert (running.apply_text, running.apply_enabled, running.polling) == ("Cancel", True, True)
    assert not (running.model_enabled or running.inputs_enabled or running.finetune_enabled)
    assert running.progress.visible

    controller.apply_or_cancel()
    cancelled = run_until_idle(controller)
    assert cancelled.status == "Cancelled." and cancelled.apply_text == "Apply" and cancelled.apply_enabled
    assert panel.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert work_folders(settings) == [] and panel.view.errors == []

    controller.apply_or_cancel()
    finished = run_until_idle(controller)
    assert finished.status.startswith("Segmentation finished in ") and not finished.progress.visible
    output = controller.parameters.get("outputSegmentation")
    assert output is not None and finished.output_segmentation_id == output.GetID()
    assert [choice.text for choice in finished.overlays] == [
        "None", "Attention: arterial", "Attention: venous", "Probability: liver", "Probability: tumor", "Uncertainty"]
    assert {node.GetBackgroundVolumeID() for node in slice_composite_nodes(panel.scene)} == {volumes["venous"].GetID()}
    assert work_folders(settings) == []

    controller.set_cases_shown(True)
    assert [(row.value, row.checked) for row in panel.state.labeled_cases] == [(output.GetID(), True)]
    controller.finetune_or_cancel()
    assert panel.state.finetune_text == "Cancel" and not panel.state.apply_enabled
    controller.finetune_or_cancel()
    assert run_until_idle(controller).status == "Cancelled."

    controller.set_versions_shown(True)
    listed = run_until_idle(controller)
    assert [choice.text for choice in listed.versions] == ["v1 · bundled  (current)"]
    assert listed.status == "Cancelled."  # listing versions leaves the last outcome in the status line
    controller.select_version(0)
    assert not panel.state.rollback_enabled  # the current version
    assert work_folders(settings) == []


@pytest.mark.slow
def test_closing_the_scene_during_a_job_stops_it_and_removes_its_files(tiny_panel: Panel,
                                                                       settings: BackendSettings) -> None:
    panel, controller = tiny_panel, tiny_panel.controller
    panel.load(LIVER)
    controller.apply_or_cancel()
    process = controller.job.process
    assert process.is_running() and len(work_folders(settings)) == 1

    panel.scene.Clear(0)
    assert controller.job is None and not process.is_running()
    assert work_folders(settings) == []
    state = panel.state
    assert state.status == f"Stopped the {process.description}: the scene was closed."
    assert state.apply_text == "Apply" and not state.apply_enabled  # a new, empty scene
    assert controller.parameters.input_volumes() == [None] * 4


def test_a_backend_error_ends_in_the_backends_sentence(tiny_panel: Panel, settings: BackendSettings,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Corrupt weights: the backend refuses them (error event, exit code 2); the panel shows its sentence."""
    broken = tmp_path / "broken-models"
    shutil.copytree(settings.bundled_models, broken)
    weights = broken / TINY_MODEL_ID / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    settings.bundled_models = broken
    panel, controller = tiny_panel, tiny_panel.controller
    panel.load(LIVER)
    controller.apply_or_cancel()
    state = run_until_idle(controller, timeout=120)
    assert state.status.startswith(f"The weights of model '{TINY_MODEL_ID}'")
    assert "are corrupt or were modified" in state.status and state.status.endswith("version).")
    assert [text for text, _ in panel.view.errors] == [state.status]
    assert state.apply_text == "Apply" and state.apply_enabled and work_folders(settings) == []


@pytest.mark.parametrize("installer, expected", [
    (RecordingInstaller(ensure="decline"), "Not started: MultiModalSeg needs mmseg-test-not-installed"),
    (RecordingInstaller(answer=False), "Not started: MultiModalSeg needs mmseg-test-not-installed"),
    (RecordingInstaller(ensure="install", pip_error=subprocess.CalledProcessError(1, ["pip"])),
     "Installing mmseg-test-not-installed>=1 failed (pip stopped with exit code 1)"),
    (RecordingInstaller(testing=True, ensure="install"), "Testing mode installs nothing"),
], ids=["pip_ensure declined", "5.10 dialog declined", "pip failed", "testing mode"])
def test_a_declined_or_failed_installation_says_so_in_one_sentence(settings: BackendSettings, tmp_path: Path,
                                                                   make_panel, installer, expected: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("mmseg-test-not-installed>=1\n", encoding="utf-8")
    panel = make_panel(settings, settings.bundled_models,
                       ensure_dependencies=lambda: ensure_backend_dependencies(requirements, installer.installer))
    panel.load(LIVER)
    panel.controller.apply_or_cancel()
    state = panel.state
    assert panel.controller.job is None and state.status.startswith(expected)
    assert state.status.count(". ") == 0 and panel.view.log[-1] == state.status
    assert state.apply_text == "Apply" and state.apply_enabled  # pressing again asks again
    assert work_folders(settings) == []


# -- overlays ---------------------------------------------------------------------------------------------------


def composite_layers(scene) -> list[tuple[str, float]]:
    """(foreground volume name or "", opacity) of each slice view."""
    return [((scene.GetNodeByID(node.GetForegroundVolumeID()).GetName() if node.GetForegroundVolumeID() else ""),
             round(node.GetForegroundOpacity(), 3)) for node in slice_composite_nodes(scene)]


@pytest.mark.slow
def test_overlays_and_opacity_touch_only_the_layer_the_panel_set(tiny_panel: Panel, make_panel, tmp_path: Path,
                                                                  settings: BackendSettings) -> None:
    panel, controller, scene = tiny_panel, tiny_panel.controller, tiny_panel.scene
    panel.load(LIVER)
    controller.apply_or_cancel()
    state = run_until_idle(controller)
    segmentation = controller.parameters.get("outputSegmentation")
    attention = next(choice.value for choice in state.overlays if choice.text == "Attention: venous")
    overlay_name = scene.GetNodeByID(attention).GetName()
    red, yellow, green = slice_composite_nodes(scene)
    pet = panel.add_volume("pet")  # the user's own foreground volume in the Red view
    red.SetForegroundVolumeID(pet.GetID())
    red.SetForegroundOpacity(0.3)

    before = composite_layers(scene)
    assert before[0] == ("pet", 0.3) and before[2][0] == ""
    controller.set_overlay_opacity(0.8)  # overlay "None": the slider moves nothing in the views
    assert composite_layers(scene) == before
    assert segmentation.GetDisplayNode().GetVisibility2DFill()

    controller.select_overlay(attention)
    assert composite_layers(scene) == [(overlay_name, 0.8)] * 3 and panel.state.overlay_id == attention
    assert not segmentation.GetDisplayNode().GetVisibility2DFill()  # outlines over the overlay
    yellow.SetForegroundVolumeID(pet.GetID())  # the user puts a volume of theirs in Yellow by hand
    yellow.SetForegroundOpacity(1.0)
    controller.set_overlay_opacity(0.4)
    assert composite_layers(scene) == [(overlay_name, 0.4), ("pet", 1.0), (overlay_name, 0.4)]

    controller.select_overlay("")  # "None": each view gets back what the overlay replaced
    assert composite_layers(scene) == [("pet", 0.3), ("pet", 1.0), before[2]]
    assert segmentation.GetDisplayNode().GetVisibility2DFill() and panel.state.overlay_id == ""

    # A scene saved with the overlay shown at 0.6 and another opacity in Yellow loads without any view changing.
    controller.select_overlay(attention)
    controller.set_overlay_opacity(0.6)
    yellow.SetForegroundVolumeID(pet.GetID())
    yellow.SetForegroundOpacity(0.9)
    saved = composite_layers(scene)
    mrml = save_scene(scene, tmp_path / "saved" / "scene.mrml")
    other = make_panel(settings, settings.bundled_models)
    other.controller.set_overlay_opacity(0.2)  # the panel's opacity before the load: another value
    load_scene(other.scene, mrml)
    other.controller.on_scene_imported()
    assert composite_layers(other.scene) == saved
    assert other.state.overlay_opacity == 0.6 and other.state.overlay_id == other.controller.parameters.get(
        "overlayVolume").GetID()
