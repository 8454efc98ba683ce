"""MultiModalSeg: segment multi-modal medical images (CT phases, MR sequences) with MAML and DTC.

Supported: Slicer 5.10 and 5.12 (Python 3.12); see ``MultiModalSegModuleLib/supported_versions.py``.

Wiring only: the module description, the sample data, and a widget that connects the panel
(``Resources/UI/MultiModalSeg.ui``) to ``MultiModalSegModuleLib.panel_controller``, which holds every
rule of the panel and is tested headless. The widget forwards user actions (``activated``,
``nodeActivated``, clicks; value signals only when not caused by :meth:`refresh`) and shows the
controller's state. Only packages may lie beside this file: Slicer loads every ``.py`` file of a
module folder as a module.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

if sys.version_info < (3, 11):  # what the code needs (typing.Self, datetime.UTC); Slicer 5.8 runs 3.9
    raise ImportError("MultiModalSeg supports Slicer 5.10 and 5.12 (Python 3.12); this Slicer runs Python "
                      f"{sys.version_info[0]}.{sys.version_info[1]}: install a supported Slicer.")

_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if _MODULE_DIR not in sys.path:  # Slicer adds it for scripted modules; a bare test run may not
    sys.path.insert(0, _MODULE_DIR)

from MultiModalSegModuleLib import dependencies, model_catalog, module_reload, sample_data, self_test_steps
from MultiModalSegModuleLib.backend_commands import BackendSettings
from MultiModalSegModuleLib.module_layout import ModuleLayoutError, ensure_library_importable, find_module_layout
from MultiModalSegModuleLib.panel_controller import PanelController
from MultiModalSegModuleLib.panel_parameters import MAX_INPUTS
from MultiModalSegModuleLib.scene_logic import headless
from MultiModalSegModuleLib.supported_versions import version_note

POLL_INTERVAL_MS = 200
logger = logging.getLogger(__name__)


class MultiModalSeg(ScriptedLoadableModule):
    """The module description Slicer shows, and the sample data it registers."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MultiModalSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MultiModalSeg contributors"]
        self.parent.helpText = _("""
Segments multi-modal images: the phases of a contrast CT (arterial, venous) or the sequences of an
MR study (T1, T1ce, T2, FLAIR), with MAML or DTC models. Supported: Slicer 5.10 and 5.12 (Python 3.12).
<ol>
<li><b>Model</b>: the one that fits the loaded volumes is picked; its card says which modalities and labels it has.</li>
<li><b>Inputs</b>: one volume per modality, filled from the volume names; MAML models accept a missing
modality (choose <i>(missing)</i>: the panel leaves your choice alone).</li>
<li><b>Apply</b>: runs in the background on the CPU or GPU (Cancel stops it); the result is a
segmentation you can correct in Segment Editor.</li>
<li><b>Overlays</b>: the attention map of each modality (MAML), the level set (DTC), the uncertainty
or a class probability, over the image.</li>
<li><b>Fine-tune</b> when the model misses on your scanner's protocol: it trains a new version on your
corrected segmentations. On one or two cases it can also make the model worse elsewhere: check the new
version, and roll back in <b>Model versions</b> if needed.</li>
</ol>
""")
        self.parent.acknowledgementText = _("""
The methods are those of: Zhang Y, Yang J, Tian J, et al. "Modality-aware Mutual Learning for
Multi-modal Medical Image Segmentation", MICCAI 2021; and Luo X, Chen J, Song T, Wang G.
"Semi-supervised Medical Image Segmentation through Dual-task Consistency", AAAI 2021.
This implementation is independent of the authors' code.
""")
        try:
            self.parent.icon = qt.QIcon(str(find_module_layout(_MODULE_DIR).icon_path))
        except ModuleLayoutError as error:
            logger.error(str(error))
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Add the bundled sample cases to the Sample Data module (category "MultiModalSeg"), with checksums."""
    import SampleData

    try:
        layout = find_module_layout(_MODULE_DIR)
    except ModuleLayoutError as error:
        logger.error(str(error))
        return
    for case in sample_data.SAMPLE_CASES:
        if case.is_available(layout.sample_data_dir):
            SampleData.SampleDataLogic.registerCustomSampleDataSource(
                **sample_data.sample_data_source_arguments(case, layout.sample_data_dir, layout.icon_path))
        else:
            logger.warning(f"MultiModalSeg sample '{case.sample_name}' is incomplete in {layout.sample_data_dir}.")


class MultiModalSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: the .ui's widgets wired to a :class:`PanelController` (it is the controller's view)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self._showing = False
        self._changePending = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        try:
            self.logic = MultiModalSegLogic()
        except ModuleLayoutError as error:
            slicer.util.errorDisplay(str(error))
            return
        uiWidget = slicer.util.loadUI(str(self.logic.moduleLayout.ui_path))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.controller = self.logic.createController(self)
        self._inputLabels = [getattr(self.ui, f"inputLabel{index}") for index in range(MAX_INPUTS)]
        self._inputSelectors = [getattr(self.ui, f"inputVolumeSelector{index}") for index in range(MAX_INPUTS)]
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.controller.poll)
        self._connect()
        self.controller.status = version_note((slicer.app.majorVersion, slicer.app.minorVersion),
                                              sys.version_info[:2])
        self.controller.enter()

    def _connect(self) -> None:
        ui, controller, user = self.ui, self.controller, self._fromUser
        scene = slicer.mrmlScene
        self.addObserver(scene, scene.StartCloseEvent, lambda *unused: controller.on_scene_start_close())
        self.addObserver(scene, scene.EndCloseEvent,
                         lambda *unused: controller.on_scene_end_close(self.parent.isEntered))
        self.addObserver(scene, scene.EndImportEvent, lambda *unused: controller.on_scene_imported())
        for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent):
            self.addObserver(scene, event, self.onNodeAddedOrRemoved)

        def option(name):
            return lambda value: controller.set_option(name, value)

        def data(comboBox, slot):
            return lambda index: slot(comboBox.itemData(index))

        ui.modelComboBox.connect("activated(int)", data(ui.modelComboBox, controller.select_model))
        for index, selector in enumerate(self._inputSelectors):
            selector.connect("nodeActivated(vtkMRMLNode*)", lambda node, row=index: controller.choose_input(row, node))
        ui.matchInputsButton.clicked.connect(controller.match_inputs)
        ui.deviceComboBox.connect("activated(int)", lambda index: option("device")(ui.deviceComboBox.itemText(index)))
        ui.overlapSliderWidget.connect("valueChanged(double)", user(option("overlap")))
        for signal in ("nodeActivated(vtkMRMLNode*)", "nodeAddedByUser(vtkMRMLNode*)"):
            ui.outputSegmentationSelector.connect(signal, option("outputSegmentation"))
        ui.applyButton.clicked.connect(controller.apply_or_cancel)
        ui.overlayComboBox.connect("activated(int)", data(ui.overlayComboBox, controller.select_overlay))
        ui.overlayOpacitySliderWidget.connect("valueChanged(double)", user(controller.set_overlay_opacity))
        ui.finetuneCollapsibleButton.connect("contentsCollapsed(bool)",
                                             lambda collapsed: controller.set_cases_shown(not collapsed))
        ui.refreshCasesButton.clicked.connect(controller.refresh_cases)
        for listWidget, labeled in ((ui.labeledCasesListWidget, True), (ui.unlabeledCasesListWidget, False)):
            listWidget.connect("itemChanged(QListWidgetItem*)", user(
                lambda item, widget=listWidget, kind=labeled:
                controller.set_case_checked(kind, widget.row(item), item.checkState() == qt.Qt.Checked)))
        ui.finetuneIterationsSpinBox.connect("valueChanged(int)", user(option("finetuneIterations")))
        ui.finetuneButton.clicked.connect(controller.finetune_or_cancel)
        ui.versionsCollapsibleButton.connect("contentsCollapsed(bool)",
                                             lambda collapsed: controller.set_versions_shown(not collapsed))
        ui.refreshVersionsButton.clicked.connect(controller.refresh_versions)
        ui.versionsListWidget.connect("currentRowChanged(int)", user(controller.select_version))
        ui.rollbackButton.clicked.connect(controller.rollback)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAddedOrRemoved(self, caller, event, node) -> None:
        """A volume or segmentation came or went: tell the controller once, after the node has its name."""
        if (node.IsA("vtkMRMLVolumeNode") or node.IsA("vtkMRMLSegmentationNode")) and not self._changePending:
            self._changePending = True
            qt.QTimer.singleShot(0, self._onVolumesChanged)

    def _onVolumesChanged(self) -> None:
        self._changePending = False
        self.controller.on_volumes_changed()

    def _fromUser(self, slot):
        """``slot``, called only when the signal did not come from :meth:`refresh` showing a state."""
        return lambda *arguments: None if self._showing else slot(*arguments)

    def cleanup(self) -> None:
        """Slicer quits or the module is reloaded: stop a running job, drop the observers."""
        if self.controller is not None:
            self._timer.stop()
            self.controller.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        if self.controller is not None:
            self.controller.enter()

    def onReload(self) -> None:
        """Reload the module's packages too (Slicer's Reload re-reads this file only)."""
        module_reload.forget_packages()
        ScriptedLoadableModuleWidget.onReload(self)

    # -- the controller's view --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the controller's state; nothing shown here is taken for a user's action."""
        state, ui = self.controller.state(), self.ui
        self._showing = True
        try:
            self._showChoices(ui.modelComboBox, state.models, state.model_id, state.model_enabled)
            ui.modelSummaryLabel.text = state.model_summary
            for row, label, selector in zip(state.input_rows, self._inputLabels, self._inputSelectors):
                label.text, label.visible, selector.visible = row.label, row.visible, row.visible
                selector.toolTip, selector.enabled = row.tooltip, state.inputs_enabled
                selector.setCurrentNode(slicer.mrmlScene.GetNodeByID(row.node_id) if row.node_id else None)
            ui.missingModalityLabel.text = state.inputs_note
            ui.matchInputsButton.enabled = state.match_enabled
            ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findText(state.device))
            ui.overlapSliderWidget.value = state.overlap
            ui.outputSegmentationSelector.setCurrentNode(slicer.mrmlScene.GetNodeByID(state.output_segmentation_id)
                                                         if state.output_segmentation_id else None)
            ui.applyButton.text, ui.applyButton.enabled, ui.applyButton.toolTip = (
                state.apply_text, state.apply_enabled, state.apply_tooltip)
            self._showProgress(ui.progressBar, state.progress)
            self._showChoices(ui.overlayComboBox, state.overlays, state.overlay_id, state.overlay_enabled)
            ui.overlayOpacitySliderWidget.value = state.overlay_opacity
            self._showCheckList(ui.labeledCasesListWidget, state.labeled_cases)
            self._showCheckList(ui.unlabeledCasesListWidget, state.unlabeled_cases)
            ui.finetuneIterationsSpinBox.value = state.finetune_iterations
            ui.finetuneButton.text, ui.finetuneButton.enabled = state.finetune_text, state.finetune_enabled
            self._showProgress(ui.finetuneProgressBar, state.finetune_progress)
            if [ui.versionsListWidget.item(row).text() for row in range(ui.versionsListWidget.count)] != [
                    choice.text for choice in state.versions]:
                ui.versionsListWidget.clear()
                ui.versionsListWidget.addItems([choice.text for choice in state.versions])
            ui.versionsListWidget.setCurrentRow(state.version_row)
            ui.refreshVersionsButton.enabled = state.refresh_versions_enabled
            ui.rollbackButton.enabled = state.rollback_enabled
            ui.statusLabel.text = state.status
        finally:
            self._showing = False
        if state.polling and not self._timer.isActive():
            self._timer.start()
        elif not state.polling:
            self._timer.stop()

    @staticmethod
    def _showChoices(comboBox, choices, value: str, enabled: bool) -> None:
        if [(comboBox.itemText(i), comboBox.itemData(i) or "") for i in range(comboBox.count)] != [
                (choice.text, choice.value) for choice in choices]:  # rebuilt only on change: an open popup stays
            comboBox.clear()
            for choice in choices:
                comboBox.addItem(choice.text, choice.value)
        comboBox.setCurrentIndex(max(comboBox.findData(value), 0) if comboBox.count else -1)
        comboBox.enabled = enabled

    @staticmethod
    def _showCheckList(listWidget, choices) -> None:
        items = [listWidget.item(row) for row in range(listWidget.count)]
        if [(item.text(), item.checkState() == qt.Qt.Checked) for item in items] == [
                (choice.text, choice.checked) for choice in choices]:
            return
        listWidget.clear()
        for choice in choices:
            item = qt.QListWidgetItem(choice.text)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if choice.checked else qt.Qt.Unchecked)
            listWidget.addItem(item)

    @staticmethod
    def _showProgress(progressBar, progress) -> None:
        progressBar.visible, progressBar.value, progressBar.format = progress.visible, progress.value, progress.text

    def append_log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    def show_error(self, text: str, details: str = "") -> None:
        if details:
            slicer.util.errorDisplay(text, detailedText=details)
        else:
            slicer.util.errorDisplay(text)

    def confirm(self, question: str) -> bool:
        return slicer.util.confirmOkCancelDisplay(question)


class MultiModalSegLogic(ScriptedLoadableModuleLogic):
    """Where the module's files are, and the controller made from them."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleLayout = find_module_layout(_MODULE_DIR)
        ensure_library_importable(self.moduleLayout)

    def createController(self, view) -> PanelController:
        settings = BackendSettings(library_parent_dir=self.moduleLayout.library_parent_dir,
                                   work_parent=Path(slicer.app.temporaryPath) / "MultiModalSeg")
        return PanelController(slicer.mrmlScene, view, settings, ensure_dependencies=self.ensureDependencies)

    def ensureDependencies(self) -> dependencies.DependencyOutcome:
        installer = dependencies.slicer_installer(confirm=slicer.util.confirmOkCancelDisplay)
        return dependencies.ensure_backend_dependencies(self.moduleLayout.requirements_path, installer)


class MultiModalSegTest(ScriptedLoadableModuleTest):
    """Self-test: sample data, the bundled model, overlays, a short fine-tuning and a rollback.

    The bodies are the functions of ``MultiModalSegModuleLib/self_test_steps.py``, which the headless
    pytest suite (``Testing/module``) runs too. Fine-tuning and rollback go to a temporary model store,
    so the user's model versions are never touched. Without the backend's packages (testing mode
    installs nothing) the segmentation test is skipped, saying why.
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()
        self.moduleLayout = find_module_layout(_MODULE_DIR)
        ensure_library_importable(self.moduleLayout)
        self.temporaryDir = Path(tempfile.mkdtemp(prefix="MultiModalSegSelfTest-"))
        self.backendSettings = BackendSettings(library_parent_dir=self.moduleLayout.library_parent_dir,
                                               model_store=self.temporaryDir / "models",
                                               work_parent=self.temporaryDir / "work")

    def tearDown(self) -> None:
        shutil.rmtree(self.temporaryDir, ignore_errors=True)

    def runTest(self) -> None:
        for test in (self.test_LoadSampleData, self.test_SegmentShowOverlaysFinetuneRollback):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skipped:  # run from the panel, not by unittest: say it and go on
                logger.warning(f"{test.__name__} skipped: {skipped}")
                self.delayDisplay(f"Skipped: {skipped}")
            finally:
                self.tearDown()

    def loadSample(self, case: sample_data.SampleCase) -> dict:
        """Load a sample case through the Sample Data module, as a user would."""
        import SampleData

        registerSampleData()
        SampleData.downloadSamples(case.sample_name)
        volumes = {modality: slicer.mrmlScene.GetFirstNodeByName(case.node_name(modality))
                   for modality in case.modalities}
        self_test_steps.check_sample_volumes(volumes, case)
        return volumes

    def test_LoadSampleData(self) -> None:
        self.delayDisplay("Loading the sample cases")
        for case in sample_data.SAMPLE_CASES:
            self.loadSample(case)
        self.delayDisplay("Sample data loaded")

    def test_SegmentShowOverlaysFinetuneRollback(self) -> None:
        self.delayDisplay("Checking the backend's Python packages")
        installer = dependencies.slicer_installer(confirm=slicer.util.confirmOkCancelDisplay)
        outcome = dependencies.ensure_backend_dependencies(self.moduleLayout.requirements_path, installer)
        if not outcome.ready:
            self.skipTest(outcome.message)
        case = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")
        volumes = self.loadSample(case)
        bundledModels = model_catalog.list_model_choices(search_paths=[self.moduleLayout.models_dir])
        model = self_test_steps.choose_model_for_modalities(bundledModels, case.modalities)

        self.delayDisplay(f"Segmenting with {model.model_id}")
        loaded = self_test_steps.segment_case(slicer.mrmlScene, self.backendSettings, model, volumes)

        self.delayDisplay("Showing the overlays")
        shown = self_test_steps.show_each_overlay(headless.current_slicer_context(), loaded)
        self.assertEqual(len(shown), len(loaded.overlays))

        self.delayDisplay("Fine-tuning for two iterations")
        self_test_steps.finetune_briefly(slicer.mrmlScene, self.backendSettings, model, loaded.segmentation,
                                        loaded.input_volumes, iterations=2)

        self.delayDisplay("Rolling back to the bundled version")
        self_test_steps.roll_back_to_oldest_version(self.backendSettings, model.model_id)
        self.delayDisplay("Test passed")
