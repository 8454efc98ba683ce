"""The widget file itself runs: ``MultiModalSeg.py`` executed with an emulation of the Slicer application.

``pythonqt_emulation`` stands in for the Slicer application only (PythonQt over PySide6, Slicer's widget
classes, ``slicer.app``); the module file, the .ui, the controller, the MRML scene and the backend are
real. The user's actions are Qt signals (a click, ``activated``, a stand-in selector's ``nodeActivated``)
and what the test reads back is what the widgets show.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from module_testing import MODULE_SCRIPT, REPOSITORY

QtWidgets = pytest.importorskip("PySide6.QtWidgets")
pytestmark = pytest.mark.skipif(os.name == "nt", reason="the PythonSlicer stand-in is a shell script")
emulation = pytest.importorskip("pythonqt_emulation")

SAMPLE_DATA_DIR = REPOSITORY / "Resources" / "SampleData"


@pytest.fixture()
def slicer_application(tmp_path: Path, tiny_bundled_models: Path, monkeypatch: pytest.MonkeyPatch):
    """The emulated application around a real headless scene; everything it changes is undone after."""
    import slicer
    import slicer.util

    from MultiModalSeg.MultiModalSegSceneLib.headless import create_headless_slicer
    from MultiModalSeg.MultiModalSegSceneLib.slice_views import slice_logics_for_views

    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    context = create_headless_slicer()
    slice_logics_for_views(context.scene, context.application_logic)
    modules_before, path_before = dict(sys.modules), list(sys.path)
    launcher = tmp_path / "bin"  # Slicer's launcher puts PythonSlicer on PATH
    launcher.mkdir()
    (launcher / "PythonSlicer").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    (launcher / "PythonSlicer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{launcher}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(tiny_bundled_models))
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    dialogs: list[tuple[str, str]] = []
    monkeypatch.setattr(slicer, "app", emulation.Application(tmp_path / "slicer-temp"), raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", context.scene, raising=False)
    monkeypatch.setitem(sys.modules, "qt", emulation.qt_module())
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", emulation.scripted_loadable_module())
    i18n = type(sys)("slicer.i18n")
    i18n.tr, i18n.translate = (lambda text: text), (lambda context, text: text)
    monkeypatch.setitem(sys.modules, "slicer.i18n", i18n)
    monkeypatch.setattr(slicer.util, "loadUI", emulation.load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", emulation.child_widget_variables)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: dialogs.append(("error", text)))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: dialogs.append(("ask", text)) or True)
    module = emulation.load_module_file(MODULE_SCRIPT)
    yield module, context, application, dialogs
    sys.modules.clear()
    sys.modules.update(modules_before)
    sys.path[:] = path_before


def process_events(application, until=lambda: True, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    application.processEvents()
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for the panel"
        time.sleep(0.05)
        application.processEvents()


@pytest.mark.slow
def test_the_widget_runs_a_users_session(slicer_application) -> None:
    module, context, application, dialogs = slicer_application
    scene = context.scene
    description = type("ModuleParent", (), {})()
    module.MultiModalSeg(description)
    assert description.title == "MultiModalSeg" and description.categories == ["Segmentation"]
    assert ("startupCompleted()", module.registerSampleData) in module.slicer.app.connections

    parent = emulation.PythonQtObject(emulation.ModuleParent())
    widget = module.MultiModalSegWidget(parent)
    widget.setup()
    parent.show()  # the module panel on screen (offscreen here)
    ui, controller = widget.ui, widget.controller
    assert [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count)] == [
        "Tiny untrained MAML for tests (tiny-maml-ct2 v1)"]
    assert not ui.applyButton.enabled and "Select at least one" in ui.applyButton.toolTip
    assert [ui.inputLabel0.text, ui.inputLabel1.text, ui.inputLabel2.visible] == ["arterial:", "venous:", False]

    from MultiModalSegModuleLib import sample_data, self_test_steps

    liver = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")
    volumes = self_test_steps.load_sample_case(scene, liver, SAMPLE_DATA_DIR)
    process_events(application)  # the deferred NodeAdded handling
    assert ui.inputVolumeSelector0.currentNode() is volumes["arterial"] and ui.applyButton.enabled

    ui.inputVolumeSelector0._qobject.userSelects(None)  # the user picks "(missing)"
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "second_arterial")
    process_events(application)
    assert ui.inputVolumeSelector0.currentNode() is None  # not refilled
    assert ui.inputVolumeSelector1.currentNode() is volumes["venous"]

    ui.overlayOpacitySliderWidget._qobject.value = 0.8  # the user moves the slider with no overlay shown
    assert controller.parameters.get("overlayOpacity") == 0.8
    controller.parameters.set("overlayOpacity", 0.3)  # a state shown is not a user's action
    widget.refresh()
    assert ui.overlayOpacitySliderWidget.value == 0.3 and controller.parameters.get("overlayOpacity") == 0.3

    ui.matchInputsButton.click()
    ui.overlapSliderWidget._qobject.value = 0.0
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel" and ui.progressBar.visible and widget._timer.isActive()
    process_events(application, until=lambda: controller.job is None, timeout=600)  # the timer polls the backend
    assert ui.statusLabel.text.startswith("Segmentation finished in "), ui.statusLabel.text
    assert ui.applyButton.text == "Apply" and not ui.progressBar.visible and not widget._timer.isActive()
    assert ui.outputSegmentationSelector.currentNode() is controller.parameters.get("outputSegmentation")
    overlays = [ui.overlayComboBox.itemText(i) for i in range(ui.overlayComboBox.count)]
    assert overlays[0] == "None" and "Attention: venous" in overlays and ui.overlayComboBox.enabled

    ui.overlayComboBox._qobject.activated.emit(overlays.index("Attention: venous"))
    shown = {node.GetForegroundVolumeID() for node in emulation_composites(scene)}
    assert shown == {ui.overlayComboBox.itemData(overlays.index("Attention: venous"))}

    ui.finetuneCollapsibleButton.collapsed = False
    assert ui.labeledCasesListWidget.count == 1 and ui.finetuneButton.enabled
    ui.labeledCasesListWidget.item(0).setCheckState(emulation.QtCore.Qt.Unchecked)  # the user unchecks it
    assert not ui.finetuneButton.enabled

    ui.applyButton.click()
    assert widget._timer.isActive()
    scene.Clear(0)  # closing the scene while the backend runs
    process_events(application)
    assert controller.job is None and not widget._timer.isActive()
    assert ui.statusLabel.text.startswith("Stopped the segmentation")
    assert dialogs == []

    widget.onReload()
    assert "MultiModalSegModuleLib.panel_controller" not in sys.modules
    widget.cleanup()


def emulation_composites(scene):
    from MultiModalSegSceneLib.slice_layers import slice_composite_nodes

    return slice_composite_nodes(scene)
