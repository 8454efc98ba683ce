"""Render the panel's .ui offscreen to a PNG: the extension's screenshot (docs/images/MultiModalSeg-panel.png).

    QT_QPA_PLATFORM=offscreen python tools/render_panel.py [--output docs/images/MultiModalSeg-panel.png]

PySide6 loads ``Resources/UI/MultiModalSeg.ui``. Slicer's own widget classes do not exist outside
Slicer, so they are drawn by Qt stand-ins: collapsible sections as group boxes (all expanded), node
selectors as combo boxes, slider widgets as a slider with a spin box. The contents are what the panel
shows with the liver sample case loaded: the panel controller's state (real bundled model manifests,
real sample volumes on a headless slicer-core scene), before Apply. In Slicer the same panel is drawn
with Slicer's widgets and style.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from PySide6 import QtCore, QtWidgets  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

UI_FILE = REPOSITORY / "Resources" / "UI" / "MultiModalSeg.ui"
DEFAULT_OUTPUT = REPOSITORY / "docs" / "images" / "MultiModalSeg-panel.png"
PANEL_WIDTH = 460


class SliderStandIn(QtWidgets.QWidget):
    """ctkSliderWidget as drawn here: a slider and a spin box."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.spinBox = QtWidgets.QDoubleSpinBox()
        layout.addWidget(self.slider)
        layout.addWidget(self.spinBox)

    def show_value(self, value: float, maximum: float) -> None:
        self.spinBox.setRange(0.0, maximum)
        self.spinBox.setValue(value)
        self.slider.setValue(round(99 * value / maximum))


class StandInLoader(QUiLoader):
    """The .ui loader with Qt stand-ins for Slicer's classes."""

    STAND_INS = {"ctkCollapsibleButton": QtWidgets.QGroupBox, "qMRMLNodeComboBox": QtWidgets.QComboBox,
                 "ctkSliderWidget": SliderStandIn, "qMRMLWidget": QtWidgets.QWidget}

    def createWidget(self, class_name: str, parent: QtWidgets.QWidget | None = None,
                     name: str = "") -> QtWidgets.QWidget:
        if class_name in self.STAND_INS:
            widget = self.STAND_INS[class_name](parent)
            widget.setObjectName(name)
            return widget
        return super().createWidget(class_name, parent, name)


def panel_state():
    """The controller's state with the liver sample loaded (no backend run)."""
    from MultiModalSeg.MultiModalSegModuleLib import model_catalog, sample_data, self_test_steps
    from MultiModalSeg.MultiModalSegModuleLib.backend_commands import BackendSettings
    from MultiModalSeg.MultiModalSegModuleLib.dependencies import DependencyOutcome, DependencyState
    from MultiModalSeg.MultiModalSegModuleLib.panel_controller import PanelController
    from MultiModalSeg.MultiModalSegSceneLib.headless import create_headless_slicer

    class Quiet:
        def refresh(self) -> None: ...
        def append_log(self, text: str) -> None: ...
        def show_error(self, text: str, details: str = "") -> None: ...
        def confirm(self, question: str) -> bool: return False

    context = create_headless_slicer()
    models = model_catalog.list_model_choices(search_paths=[REPOSITORY / "Resources" / "Models"])
    controller = PanelController(context.scene, Quiet(), BackendSettings(library_parent_dir=REPOSITORY),
                                 lambda: DependencyOutcome(DependencyState.READY), list_models=lambda: models)
    controller.enter()
    case = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")
    self_test_steps.load_sample_case(context.scene, case, REPOSITORY / "Resources" / "SampleData")
    controller.on_volumes_changed()
    names = {row.node_id: context.scene.GetNodeByID(row.node_id).GetName()
             for row in controller.state().input_rows if row.node_id}
    return controller.state(), names


def render_panel(output: Path = DEFAULT_OUTPUT) -> Path:
    """Load the .ui with stand-ins, show the liver case's state in it, save the PNG; returns its path."""
    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    ui_file = QtCore.QFile(str(UI_FILE))
    if not ui_file.open(QtCore.QFile.ReadOnly):
        raise SystemExit(f"Cannot open {UI_FILE}.")
    try:
        panel = StandInLoader().load(ui_file)
    finally:
        ui_file.close()
    state, volume_names = panel_state()
    child = panel.findChild
    for box in panel.findChildren(QtWidgets.QGroupBox):
        box.setTitle(str(box.property("text") or ""))
    for model in state.models:
        child(QtWidgets.QComboBox, "modelComboBox").addItem(model.text)
    child(QtWidgets.QComboBox, "modelComboBox").setCurrentIndex([m.value for m in state.models].index(state.model_id))
    child(QtWidgets.QLabel, "modelSummaryLabel").setText(state.model_summary)
    for index, row in enumerate(state.input_rows):
        child(QtWidgets.QLabel, f"inputLabel{index}").setText(row.label)
        selector = child(QtWidgets.QComboBox, f"inputVolumeSelector{index}")
        selector.addItem(volume_names.get(row.node_id, "(missing)"))
        for widget in (child(QtWidgets.QLabel, f"inputLabel{index}"), selector):
            widget.setVisible(row.visible)
    child(QtWidgets.QLabel, "missingModalityLabel").setText(state.inputs_note)
    child(QtWidgets.QComboBox, "outputSegmentationSelector").addItem("(new segmentation)")
    child(SliderStandIn, "overlapSliderWidget").show_value(state.overlap, 0.9)
    child(SliderStandIn, "overlayOpacitySliderWidget").show_value(state.overlay_opacity, 1.0)
    child(QtWidgets.QPushButton, "applyButton").setEnabled(state.apply_enabled)
    child(QtWidgets.QPushButton, "finetuneButton").setEnabled(state.finetune_enabled)
    child(QtWidgets.QComboBox, "overlayComboBox").setEnabled(state.overlay_enabled)
    for name in ("progressBar", "finetuneProgressBar"):
        child(QtWidgets.QProgressBar, name).hide()
    child(QtWidgets.QLabel, "statusLabel").setText("Ready: press Apply to segment the liver phantom.")
    panel.resize(PANEL_WIDTH, 10)
    panel.show()
    application.processEvents()
    panel.resize(PANEL_WIDTH, panel.sizeHint().height())
    application.processEvents()
    output.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(output)):
        raise SystemExit(f"Could not write {output}.")
    panel.close()
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write (default: %(default)s)")
    print(render_panel(parser.parse_args(argv).output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
