"""The panel's .ui file: it loads in Qt, holds every widget the module uses, and binds the parameter node.

PySide6's QUiLoader stands in for Slicer's loader: it loads Slicer's widget classes
(qMRMLNodeComboBox, ctkCollapsibleButton, ...) as plain QWidgets, so names, structure and
properties can be checked here, behaviour only inside Slicer.
"""

from __future__ import annotations

import ast
import re
from xml.etree import ElementTree

import pytest
from module_testing import UI_FILE

QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtUiTools = pytest.importorskip("PySide6.QtUiTools")
QtCore = pytest.importorskip("PySide6.QtCore")


@pytest.fixture(scope="module")
def loaded_ui():
    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    ui_file = QtCore.QFile(str(UI_FILE))
    assert ui_file.open(QtCore.QFile.ReadOnly)
    try:
        widget = QtUiTools.QUiLoader().load(ui_file)
    finally:
        ui_file.close()
    assert widget is not None, "QUiLoader could not load the .ui file"
    yield widget
    widget.deleteLater()
    application.processEvents()


@pytest.fixture(scope="module")
def ui_tree() -> ElementTree.ElementTree:
    return ElementTree.parse(UI_FILE)


def widget_classes(tree: ElementTree.ElementTree) -> dict[str, str]:
    return {element.get("name"): element.get("class") for element in tree.iter("widget")}


def ui_names_used_by_module(source: str) -> set[str]:
    """Every ``self.ui.<name>`` in the module, plus the names built with ``getattr(self.ui, f"...{index}")``."""
    names = set(re.findall(r"\bself\.ui\.([A-Za-z_][A-Za-z0-9_]*)", source))
    for prefix in re.findall(r"getattr\(self\.ui, f\"([A-Za-z_]+)\{index\}\"\)", source):
        names |= {f"{prefix}{index}" for index in range(max_inputs(source))}
    return names


def max_inputs(source: str) -> int:
    return int(re.search(r"^MAX_INPUTS = (\d+)", source, re.MULTILINE).group(1))


def parameter_node_fields(source: str) -> dict[str, str]:
    """Field name -> annotation text of the module's ``@parameterNodeWrapper`` class."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list):
            return {item.target.id: ast.unparse(item.annotation) for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise AssertionError("The module has no @parameterNodeWrapper class")


def test_the_ui_file_loads_offscreen_with_a_qmrmlwidget_root(loaded_ui, ui_tree) -> None:
    root = ui_tree.getroot().find("widget")
    assert root.get("class") == "qMRMLWidget"
    assert loaded_ui.objectName() == root.get("name") == "MultiModalSeg"


def test_every_widget_the_module_uses_exists_in_the_ui_file(loaded_ui, module_source) -> None:
    used = ui_names_used_by_module(module_source)
    assert len(used) > 20, "the regex found too few names; the module's style changed?"
    present = {child.objectName() for child in loaded_ui.findChildren(QtWidgets.QWidget)}
    missing = sorted(used - present)
    assert not missing, f"the module uses widgets the .ui file lacks: {missing}"


def test_the_panel_uses_slicers_widgets(ui_tree) -> None:
    classes = widget_classes(ui_tree)
    assert sum(1 for c in classes.values() if c == "ctkCollapsibleButton") >= 5
    assert classes["outputSegmentationSelector"] == "qMRMLNodeComboBox"
    assert classes["overlapSliderWidget"] == classes["overlayOpacitySliderWidget"] == "ctkSliderWidget"
    for name in ("modelComboBox", "deviceComboBox", "overlayComboBox"):
        assert classes[name] == "QComboBox"
    for name in ("applyButton", "finetuneButton", "rollbackButton", "refreshVersionsButton"):
        assert classes[name] == "QPushButton"
    assert classes["progressBar"] == classes["finetuneProgressBar"] == "QProgressBar"
    assert classes["logTextEdit"] == "QPlainTextEdit"
    for name in ("versionsListWidget", "labeledCasesListWidget", "unlabeledCasesListWidget"):
        assert classes[name] == "QListWidget"
    custom = {element.findtext("class") for element in ui_tree.iter("customwidget")}
    assert {"qMRMLWidget", "qMRMLNodeComboBox", "ctkCollapsibleButton", "ctkSliderWidget"} <= custom


def test_one_input_selector_per_possible_modality(ui_tree, module_source) -> None:
    classes = widget_classes(ui_tree)
    count = max_inputs(module_source)
    for index in range(count):
        assert classes[f"inputVolumeSelector{index}"] == "qMRMLNodeComboBox"
        assert classes[f"inputLabel{index}"] == "QLabel"
    assert f"inputVolumeSelector{count}" not in classes


def test_node_selectors_get_the_scene_and_take_the_right_node_types(loaded_ui, ui_tree) -> None:
    receivers = {c.findtext("receiver") for c in ui_tree.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {name for name, cls in widget_classes(ui_tree).items() if cls == "qMRMLNodeComboBox"}
    assert selectors <= receivers, f"selectors without setMRMLScene: {sorted(selectors - receivers)}"
    assert loaded_ui.findChild(QtWidgets.QWidget, "inputVolumeSelector0").property("nodeTypes") == [
        "vtkMRMLScalarVolumeNode"]
    assert loaded_ui.findChild(QtWidgets.QWidget, "outputSegmentationSelector").property("nodeTypes") == [
        "vtkMRMLSegmentationNode"]


def test_slicer_parameter_names_are_fields_of_the_parameter_node(loaded_ui, module_source) -> None:
    fields = parameter_node_fields(module_source)
    bound = {child.objectName(): child.property("SlicerParameterName")
             for child in loaded_ui.findChildren(QtWidgets.QWidget) if child.property("SlicerParameterName")}
    assert set(bound.values()) <= set(fields), f"unknown parameters: {set(bound.values()) - set(fields)}"
    expected = {f"inputVolume{i}" for i in range(max_inputs(module_source))} | {
        "device", "overlap", "outputSegmentation", "overlayOpacity", "finetuneIterations"}
    assert expected <= set(bound.values())
    # The bound types fit the widgets Slicer's GUI connectors accept.
    assert "vtkMRMLScalarVolumeNode" in fields["inputVolume0"]
    assert "vtkMRMLSegmentationNode" in fields["outputSegmentation"]
    assert "Choice" in fields["device"] and "WithinRange" in fields["overlap"]
    assert "WithinRange" in fields["overlayOpacity"] and fields["finetuneIterations"].startswith("Annotated[int")


def test_device_choices_match_the_ui_items(ui_tree) -> None:
    from MultiModalSeg.MultiModalSegModuleLib.backend_commands import DEVICES

    combo = next(w for w in ui_tree.iter("widget") if w.get("name") == "deviceComboBox")
    items = [item.findtext("property/string") for item in combo.findall("item")]
    assert tuple(items) == DEVICES

