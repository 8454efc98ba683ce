"""The panel's .ui file: it loads in Qt, holds every widget the module wires, and says what it must.

PySide6's QUiLoader stands in for Slicer's loader: it loads Slicer's widget classes
(qMRMLNodeComboBox, ctkCollapsibleButton, ...) as plain QWidgets, so names, structure and
properties can be checked here, behaviour only inside Slicer.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest
from module_testing import REPOSITORY, UI_FILE

from MultiModalSeg.MultiModalSegModuleLib.panel_parameters import MAX_INPUTS

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
    """Every ``ui.<name>`` in the module, plus the names built with ``getattr(self.ui, f"...{index}")``."""
    names = set(re.findall(r"\bui\.([A-Za-z_][A-Za-z0-9_]*)", source))
    for prefix in re.findall(r"getattr\(self\.ui, f\"([A-Za-z_]+)\{index\}\"\)", source):
        names |= {f"{prefix}{index}" for index in range(MAX_INPUTS)}
    return names


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


def test_one_input_selector_per_possible_modality(ui_tree) -> None:
    classes = widget_classes(ui_tree)
    for index in range(MAX_INPUTS):
        assert classes[f"inputVolumeSelector{index}"] == "qMRMLNodeComboBox"
        assert classes[f"inputLabel{index}"] == "QLabel"
    assert f"inputVolumeSelector{MAX_INPUTS}" not in classes


def test_node_selectors_get_the_scene_and_take_the_right_node_types(loaded_ui, ui_tree) -> None:
    receivers = {c.findtext("receiver") for c in ui_tree.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {name for name, cls in widget_classes(ui_tree).items() if cls == "qMRMLNodeComboBox"}
    assert selectors <= receivers, f"selectors without setMRMLScene: {sorted(selectors - receivers)}"
    assert loaded_ui.findChild(QtWidgets.QWidget, "outputSegmentationSelector").property("nodeTypes") == [
        "vtkMRMLSegmentationNode"]


def test_input_selectors_show_exactly_what_auto_matching_may_pick(loaded_ui) -> None:
    """The selectors list one exact class (no children: no vector, DWI or tensor volumes) and the panel
    matches only that class, so it never picks a volume the user cannot see in the selector."""
    from MultiModalSeg.MultiModalSegModuleLib.input_selection import INPUT_NODE_CLASS

    for index in range(MAX_INPUTS):
        selector = loaded_ui.findChild(QtWidgets.QWidget, f"inputVolumeSelector{index}")
        assert selector.property("nodeTypes") == [INPUT_NODE_CLASS]
        assert selector.property("showChildNodeTypes") is False
        assert selector.property("noneEnabled") is True


def test_no_widget_is_bound_to_the_parameter_node_behind_the_controllers_back(loaded_ui) -> None:
    """The controller is the parameter node's only writer: a ``SlicerParameterName`` binding would
    write widget values back on every scene load (the opacity slider re-applied the overlay)."""
    bound = [child.objectName() for child in loaded_ui.findChildren(QtWidgets.QWidget)
             if child.property("SlicerParameterName")]
    assert bound == []


def test_the_fine_tune_section_says_when_to_fine_tune_with_the_measured_figures(loaded_ui) -> None:
    """The advice quotes the README's "Does fine-tuning help?" measurements; each figure must be there."""
    text = loaded_ui.findChild(QtWidgets.QLabel, "finetuneAdviceLabel").text()
    compact = " ".join(re.sub(r"<[^>]+>", "", text).split())
    assert "when the model misses on your scanner's protocol" in compact
    assert ("fine-tuning on one or two corrected cases can also make it worse elsewhere: check the new version, "
            "roll back if needed") in compact.lower()
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Does fine-tuning help?", 1)[1].split("\n## ", 1)[0]
    measured = {f"{float(number):.2f}" for number in re.findall(r"\b\d\.\d{2,3}\b", section)}
    figures = re.findall(r"\d\.\d\d", compact)
    assert len(figures) >= 8
    for figure in figures:  # rounded: 0.43 quotes the README's 0.434, 0.70 its 0.697
        assert figure in measured, f"{figure} is not in the README's section"


def test_device_choices_match_the_ui_items(ui_tree) -> None:
    from MultiModalSeg.MultiModalSegModuleLib.backend_commands import DEVICES

    combo = next(w for w in ui_tree.iter("widget") if w.get("name") == "deviceComboBox")
    items = [item.findtext("property/string") for item in combo.findall("item")]
    assert tuple(items) == DEVICES

