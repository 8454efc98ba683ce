"""MultiModalSeg: segment multi-modal medical images (CT phases, MR sequences) with MAML and DTC.

This file is the thin Qt layer of the module: the module description, the parameter node,
the panel (``Resources/UI/MultiModalSeg.ui``) and the self-test. Everything the panel does
lives in Qt-free code beside it, so it runs and is tested without the application:

* ``MultiModalSegModuleLib``: where the resources are, the backend runs (subprocess,
  JSON-line progress, Cancel), the model list, modality matching, dependencies, self-test steps;
* ``MultiModalSegSceneLib``: the scene logic (volumes to files, results into the scene,
  overlays, slice views);
* ``MultiModalSegLib``: the backend, always run in another process with Slicer's Python.

Layouts: from a clone (Developer > Add module path ``<clone>/MultiModalSeg``) the resources
and the backend are one folder up; installed, they are beside this file (see
``MultiModalSegModuleLib/module_layout.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if _MODULE_DIR not in sys.path:  # Slicer adds it for scripted modules; a bare test run may not
    sys.path.insert(0, _MODULE_DIR)

from MultiModalSegModuleLib import (
    backend_jobs,
    dependencies,
    modality_matching,
    model_catalog,
    overlay_choices,
    sample_data,
    self_test_steps,
)
from MultiModalSegModuleLib.backend_commands import DEVICES, BackendSettings
from MultiModalSegModuleLib.backend_process import (
    EVENT_PROGRESS,
    EVENT_STDERR,
    BackendEvent,
    BackendProcess,
    BackendStartError,
    RunState,
)
from MultiModalSegModuleLib.module_layout import (
    ModuleLayout,
    ModuleLayoutError,
    ensure_library_importable,
    find_module_layout,
)
from MultiModalSegModuleLib.scene_logic import errors as scene_errors
from MultiModalSegModuleLib.scene_logic import headless, node_roles, overlays, slice_layers

MAX_INPUTS = 4
"""The panel has four input rows (``inputVolumeSelector0..3`` in the .ui), shown one per modality of
the chosen model and hidden otherwise: BraTS-style MR, the largest case, has four. A fixed set of
selectors keeps the parameter node binding declarative (``SlicerParameterName`` in the .ui); a model
with more modalities is refused with a message."""

POLL_INTERVAL_MS = 200

logger = logging.getLogger(__name__)

USER_ERRORS = (scene_errors.SceneLogicError, backend_jobs.BackendRunError, BackendStartError,
               dependencies.DependencyError, ModuleLayoutError, ValueError, FileNotFoundError)
"""Errors whose message is a sentence for the user (shown as it is)."""


def _moduleLayout() -> ModuleLayout:
    """The module's resource and library folders; the library is made importable."""
    layout = find_module_layout(_MODULE_DIR)
    ensure_library_importable(layout)
    return layout


#
# MultiModalSeg
#


class MultiModalSeg(ScriptedLoadableModule):
    """The module description Slicer shows, and the sample data it registers."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MultiModalSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["MultiModalSeg contributors"]
        self.parent.helpText = """
Segments multi-modal images: the phases of a contrast CT (arterial, venous) or the sequences of an
MR study (T1, T1ce, T2, FLAIR), with MAML or DTC models.
<ol>
<li><b>Model</b>: pick a model; its card says which modalities and labels it has.</li>
<li><b>Inputs</b>: one volume per modality, filled from the volume names; MAML models accept a
missing modality.</li>
<li><b>Apply</b>: runs in the background on the CPU or GPU (Cancel stops it); the result is a
segmentation you can correct in Segment Editor.</li>
<li><b>Overlays</b>: the attention map of each modality (MAML), the level set (DTC), the uncertainty
or a class probability, over the image.</li>
<li><b>Fine-tune</b>: train the model further on your corrected segmentations (and other loaded
studies, without labels); each run is a new version, and <b>Model versions</b> rolls back.</li>
</ol>
"""
        self.parent.acknowledgementText = """
The methods are those of: Zhang Y, Yang J, Tian J, et al. "Modality-aware Mutual Learning for
Multi-modal Medical Image Segmentation", MICCAI 2021; and Luo X, Chen J, Song T, Wang G.
"Semi-supervised Medical Image Segmentation through Dual-task Consistency", AAAI 2021.
This implementation is independent of the authors' code.
"""
        try:
            self.parent.icon = qt.QIcon(str(find_module_layout(_MODULE_DIR).icon_path))
        except ModuleLayoutError as error:
            logger.error(str(error))
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Add the bundled sample cases to the Sample Data module (category "MultiModalSeg")."""
    import SampleData

    try:
        layout = find_module_layout(_MODULE_DIR)
    except ModuleLayoutError as error:
        logger.error(str(error))
        return
    for case in sample_data.SAMPLE_CASES:
        if not case.is_available(layout.sample_data_dir):
            logger.warning(f"MultiModalSeg sample '{case.sample_name}' is incomplete in {layout.sample_data_dir}.")
            continue
        files = case.files(layout.sample_data_dir)
        thumbnail = case.thumbnail(layout.sample_data_dir)
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=sample_data.SAMPLE_DATA_CATEGORY,
            sampleName=case.sample_name,
            uris=[path.as_uri() for path in files.values()],
            fileNames=[path.name for path in files.values()],
            nodeNames=[case.node_name(modality) for modality in files],
            thumbnailFileName=str(thumbnail if thumbnail.is_file() else layout.icon_path),
            loadFileType="VolumeFile",
        )


#
# MultiModalSegParameterNode
#


@parameterNodeWrapper
class MultiModalSegParameterNode:
    """The panel's state, saved with the scene.

    modelId: the model package id. inputVolume0..3: the volume of each modality, in the model's
    channel order. device: auto (CUDA when available), cpu or cuda. overlap: sliding-window overlap.
    outputSegmentation: where the result goes (None: a new segmentation). overlayVolume: the overlay
    shown in the slice views; overlayOpacity: its opacity. finetuneIterations: fine-tuning length.
    """

    modelId: str = ""
    inputVolume0: vtkMRMLScalarVolumeNode
    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    inputVolume3: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    overlap: Annotated[float, WithinRange(0.0, 0.9)] = 0.5
    outputSegmentation: vtkMRMLSegmentationNode
    overlayVolume: vtkMRMLScalarVolumeNode
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    finetuneIterations: Annotated[int, WithinRange(1, 100000)] = 200


#
# MultiModalSegWidget
#


class MultiModalSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads the GUI into the parameter node, starts jobs, shows their progress."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: MultiModalSegLogic | None = None
        self._parameterNode: MultiModalSegParameterNode | None = None
        self._parameterNodeGuiTag = None
        self._models: list[model_catalog.ModelChoice] = []
        self._job: Any = None
        self._jobKind = ""
        self._jobProcess: BackendProcess | None = None
        self._jobProgressBar = None
        self._lastStage = ""
        self._unlabeledCandidates: list[modality_matching.CaseCandidate] = []
        self._versions: list[backend_jobs.ModelVersion] = []

    # -- set-up -------------------------------------------------------------------------------------------------

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
        self._inputLabels = [getattr(self.ui, f"inputLabel{index}") for index in range(MAX_INPUTS)]
        self._inputSelectors = [getattr(self.ui, f"inputVolumeSelector{index}") for index in range(MAX_INPUTS)]
        self.ui.progressBar.hide()
        self.ui.finetuneProgressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)

        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        self.ui.matchInputsButton.clicked.connect(lambda: self.fillInputsFromNames(onlyEmpty=False))
        for selector in self._inputSelectors:
            selector.currentNodeChanged.connect(self.updateButtonStates)
        self.ui.applyButton.clicked.connect(self.onApplyOrCancel)
        self.ui.overlayComboBox.currentIndexChanged.connect(self.onOverlaySelected)
        self.ui.overlayOpacitySliderWidget.valueChanged.connect(self.onOverlayOpacityChanged)
        self.ui.refreshCasesButton.clicked.connect(self.updateFinetuneCases)
        self.ui.labeledCasesListWidget.itemChanged.connect(self.updateButtonStates)
        self.ui.finetuneButton.clicked.connect(self.onFinetuneOrCancel)
        self.ui.finetuneCollapsibleButton.contentsCollapsed.connect(self.onFinetuneSectionToggled)
        self.ui.refreshVersionsButton.clicked.connect(self.onRefreshVersions)
        self.ui.versionsListWidget.currentRowChanged.connect(self.updateButtonStates)
        self.ui.versionsCollapsibleButton.contentsCollapsed.connect(self.onVersionsSectionToggled)
        self.ui.rollbackButton.clicked.connect(self.onRollback)

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.timeout.connect(self.onPollJob)

        self.populateModels()
        self.initializeParameterNode()
        self.populateOverlays()

    def cleanup(self) -> None:
        """Called when the application closes or the module is reloaded: stop a running job."""
        self.discardJob()
        self.removeObservers()
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)

    def enter(self) -> None:
        self.initializeParameterNode()
        self.populateOverlays()

    def exit(self) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.discardJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
        self.populateOverlays()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, callData) -> None:
        """A loaded volume may be the missing modality: fill empty inputs once its name is final."""
        if isinstance(callData, slicer.vtkMRMLScalarVolumeNode) and not callData.IsA("vtkMRMLLabelMapVolumeNode"):
            qt.QTimer.singleShot(0, lambda: self.fillInputsFromNames(onlyEmpty=True))

    # -- parameter node -----------------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        if self.logic is None:
            return
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.modelId and self._models:
            self._parameterNode.modelId = self._models[0].model_id
        self.selectModelInComboBox(self._parameterNode.modelId)
        self.fillInputsFromNames(onlyEmpty=True)

    def setParameterNode(self, inputParameterNode: MultiModalSegParameterNode | None) -> None:
        if self._parameterNode is not None:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.updateButtonStates()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self.updateButtonStates()

    # -- model and inputs ---------------------------------------------------------------------------------------

    def currentModel(self) -> model_catalog.ModelChoice | None:
        modelId = self.ui.modelComboBox.currentData
        return next((model for model in self._models if model.model_id == modelId), None)

    def populateModels(self) -> None:
        """Fill the model selector from the installed model packages (keeps the selection)."""
        previous = self.ui.modelComboBox.currentData
        try:
            self._models = self.logic.models()
        except Exception as error:  # a broken store must not break the panel
            logger.exception("Could not list the model packages")
            self._models = []
            self.appendLog(f"Could not list the model packages: {error}")
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for model in self._models:
            self.ui.modelComboBox.addItem(model.display_name(), model.model_id)
        self.ui.modelComboBox.blockSignals(wasBlocked)
        self.selectModelInComboBox(previous or (self._parameterNode.modelId if self._parameterNode else ""))

    def selectModelInComboBox(self, modelId: str) -> None:
        index = self.ui.modelComboBox.findData(modelId) if modelId else -1
        if index < 0 and self.ui.modelComboBox.count > 0:
            index = 0
        if index >= 0:
            self.ui.modelComboBox.setCurrentIndex(index)
        self.onModelChanged()

    def onModelChanged(self, index: int | None = None) -> None:
        model = self.currentModel()
        changed = (self._parameterNode is not None and model is not None
                   and self._parameterNode.modelId != model.model_id)
        if changed:
            self._parameterNode.modelId = model.model_id
        self.ui.modelSummaryLabel.text = (model.summary_html() if model is not None else
                                          "No model package found: reinstall the extension or fine-tune a model.")
        self.configureInputRows(model)
        # Another model has other modalities in its rows: match them all again; else keep the user's choices.
        self.fillInputsFromNames(onlyEmpty=not changed)
        self._versions = []
        self.ui.versionsListWidget.clear()
        if not self.ui.versionsCollapsibleButton.collapsed:
            self.onRefreshVersions()
        self.updateButtonStates()

    def configureInputRows(self, model: model_catalog.ModelChoice | None) -> None:
        """One visible input row per modality of the model, labelled with the modality's name."""
        names = model.modality_names if model is not None else []
        for index, (label, selector) in enumerate(zip(self._inputLabels, self._inputSelectors)):
            visible = index < len(names)
            label.setVisible(visible)
            selector.setVisible(visible)
            if visible:
                label.text = f"{names[index]}:"
                patterns = ", ".join(model.modalities[index].all_patterns())
                selector.toolTip = f"The {names[index]} volume (names matching {patterns} are picked by themselves)."
        if model is None:
            self.ui.missingModalityLabel.text = ""
        elif len(names) > MAX_INPUTS:
            self.ui.missingModalityLabel.text = (f"This model needs {len(names)} modalities; the panel takes at most "
                                                 f"{MAX_INPUTS}. Use the command line (python -m MultiModalSegLib).")
        elif model.supports_missing_modalities and len(names) > 1:
            self.ui.missingModalityLabel.text = "A missing modality may be left empty: the others still segment."
        else:
            self.ui.missingModalityLabel.text = "Every modality is needed."

    def candidateVolumes(self) -> list[Any]:
        """Image volumes in the scene that can be inputs (not label maps, not MultiModalSeg overlays)."""
        volumes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
        return [node for node in volumes if not node.IsA("vtkMRMLLabelMapVolumeNode")
                and node.GetAttribute(node_roles.ROLE_ATTRIBUTE) != node_roles.ROLE_OVERLAY]

    def fillInputsFromNames(self, onlyEmpty: bool = True) -> None:
        """Fill the input selectors from volume names by the model's patterns."""
        model = self.currentModel()
        if model is None or self._parameterNode is None or self._job is not None:
            return
        volumes = self.candidateVolumes()
        selected = {self._parameterNode.getValue(f"inputVolume{index}") for index in range(MAX_INPUTS)}
        if onlyEmpty:
            volumes = [node for node in volumes if node not in selected]
        entries = [modality_matching.VolumeEntry(node.GetID(), node.GetName()) for node in volumes]
        matches = modality_matching.match_volumes_to_modalities(entries, model.modalities)
        with slicer.util.NodeModify(self._parameterNode):
            for index, modality in enumerate(model.modality_names[:MAX_INPUTS]):
                parameter = f"inputVolume{index}"
                if onlyEmpty and self._parameterNode.getValue(parameter) is not None:
                    continue
                volumeId = matches.get(modality)
                if volumeId is not None or not onlyEmpty:
                    volume = slicer.mrmlScene.GetNodeByID(volumeId) if volumeId else None
                    self._parameterNode.setValue(parameter, volume)

    def selectedVolumes(self, model: model_catalog.ModelChoice) -> dict[str, Any]:
        """Modality -> selected volume node (None for a missing modality)."""
        return {modality: self._parameterNode.getValue(f"inputVolume{index}")
                for index, modality in enumerate(model.modality_names[:MAX_INPUTS])}

    def inputsReady(self, model: model_catalog.ModelChoice | None) -> bool:
        if model is None or self._parameterNode is None or len(model.modalities) > MAX_INPUTS:
            return False
        chosen = [node for node in self.selectedVolumes(model).values() if node is not None]
        return bool(chosen) and (model.supports_missing_modalities or len(chosen) == len(model.modalities))

    # -- buttons ------------------------------------------------------------------------------------------------

    def updateButtonStates(self, *unused) -> None:
        if self.logic is None or not hasattr(self, "ui"):
            return
        model = self.currentModel()
        running = self._job is not None
        self.ui.applyButton.text = "Cancel" if self._jobKind == "predict" else "Apply"
        self.ui.applyButton.enabled = self._jobKind == "predict" or (not running and self.inputsReady(model))
        self.ui.finetuneButton.text = "Cancel" if self._jobKind == "finetune" else "Fine-tune"
        self.ui.finetuneButton.enabled = self._jobKind == "finetune" or (
            not running and model is not None and bool(self.checkedLabeledSegmentations()))
        version = self.selectedVersion()
        self.ui.rollbackButton.enabled = not running and version is not None and not version.current
        self.ui.refreshVersionsButton.enabled = not running and model is not None
        self.ui.matchInputsButton.enabled = not running and model is not None
        self.ui.modelComboBox.enabled = not running

    def onApplyOrCancel(self) -> None:
        if self._jobKind == "predict":
            self.cancelJob()
            return
        model = self.currentModel()
        if model is None or not self.ensureDependencies():
            return
        parameters = self._parameterNode
        self.startJob("predict", lambda: self.logic.startSegmentation(
            model, self.selectedVolumes(model), parameters.device, parameters.overlap, parameters.outputSegmentation),
            self.ui.progressBar)

    def onFinetuneOrCancel(self) -> None:
        if self._jobKind == "finetune":
            self.cancelJob()
            return
        model = self.currentModel()
        if model is None or not self.ensureDependencies():
            return
        labeled = [backend_jobs.LabeledCase(case_id=node.GetName(), segmentation_node=node,
                                            volume_nodes=self.volumesOfSegmentation(node, model))
                   for node in self.checkedLabeledSegmentations()]
        unlabeled = [backend_jobs.UnlabeledCase(case_id=candidate.name, volume_nodes={
                         modality: slicer.mrmlScene.GetNodeByID(volumeId)
                         for modality, volumeId in candidate.volumes.items()})
                     for candidate in self.checkedUnlabeledCases()]
        device = self._parameterNode.device
        iterations = self._parameterNode.finetuneIterations
        self.startJob("finetune", lambda: self.logic.startFinetune(model, labeled, unlabeled, iterations, device),
                      self.ui.finetuneProgressBar)

    def ensureDependencies(self) -> bool:
        try:
            return self.logic.ensureDependencies(confirm=slicer.util.confirmOkCancelDisplay)
        except USER_ERRORS as error:
            slicer.util.errorDisplay(str(error))
            return False

    # -- jobs ---------------------------------------------------------------------------------------------------

    def startJob(self, kind: str, start, progressBar=None) -> None:
        """Run ``start()`` (exports inputs and starts the backend) and poll the job until it ends."""
        if self._job is not None:
            return
        try:
            with slicer.util.WaitCursor():
                job = start()
        except USER_ERRORS as error:
            slicer.util.errorDisplay(str(error))
            return
        except Exception as error:
            logger.exception(f"MultiModalSeg could not start the {kind} job")
            slicer.util.errorDisplay(f"Could not start: {error}. See the Python console for details.")
            return
        self._job, self._jobKind = job, kind
        self._jobProcess = job if isinstance(job, BackendProcess) else job.process
        self._jobProgressBar = progressBar
        self._lastStage = ""
        if progressBar is not None:
            progressBar.value = 0
            progressBar.format = "starting %p%"
            progressBar.show()
        self.ui.statusLabel.text = f"Running the {self._jobProcess.description}..."
        self.appendLog(f"Started the {self._jobProcess.description}.")
        self._pollTimer.start()
        self.updateButtonStates()

    def cancelJob(self) -> None:
        """Ask the running job to stop; the poll timer notices when it has (the UI never blocks)."""
        if self._jobProcess is not None and self._jobProcess.is_running():
            self._jobProcess.request_cancel()
            self.ui.statusLabel.text = "Cancelling..."
            self.appendLog("Cancelling...")

    def discardJob(self) -> None:
        """Stop a running job and remove its files at once (scene closing, module reloading)."""
        if getattr(self, "_pollTimer", None) is not None:
            self._pollTimer.stop()
        if self._job is not None:
            try:
                if isinstance(self._job, BackendProcess):
                    if self._job.is_running():
                        self._job.cancel()
                else:
                    backend_jobs.discard_job(self._job)
            except Exception:
                logger.exception("MultiModalSeg could not stop its background job")
        self._job, self._jobKind, self._jobProcess = None, "", None
        if self._jobProgressBar is not None:
            self._jobProgressBar.hide()

    def onPollJob(self) -> None:
        process = self._jobProcess
        if process is None:
            self._pollTimer.stop()
            return
        for event in process.poll_events():
            self.showBackendEvent(event)
        if process.is_finished():
            self._pollTimer.stop()
            self.onJobFinished()

    def showBackendEvent(self, event: BackendEvent) -> None:
        """Progress into the bar; stage changes and everything else into the log."""
        if event.event == EVENT_PROGRESS:
            fraction = event.fraction()
            if self._jobProgressBar is not None and fraction is not None:
                self._jobProgressBar.value = round(100 * fraction)
                self._jobProgressBar.format = f"{event.stage} %p%"
            if event.stage != self._lastStage:
                self._lastStage = event.stage
                self.appendLog(f"{event.stage}...")
            return
        if event.event == EVENT_STDERR and not event.line.strip():
            return
        self.appendLog(event.describe())

    def onJobFinished(self) -> None:
        job, kind, process = self._job, self._jobKind, self._jobProcess
        self._job, self._jobKind, self._jobProcess = None, "", None
        if self._jobProgressBar is not None:
            self._jobProgressBar.hide()
        outcome = process.outcome()
        try:
            if kind == "predict":
                loaded = self.logic.finishSegmentation(job)
                self._parameterNode.outputSegmentation = loaded.segmentation
                self.populateOverlays()
                if not self.ui.finetuneCollapsibleButton.collapsed:
                    self.updateFinetuneCases()
                seconds = ((outcome.result or {}).get("timing") or {}).get("seconds")
                self.reportDone("Segmentation finished" + (f" in {seconds:.1f} s." if seconds else "."))
            elif kind == "finetune":
                result = backend_jobs.finish_finetune(job)
                self.reportDone(backend_jobs.describe_finetune_result(result, job.model))
                self.populateModels()
                self.onRefreshVersions()
            elif kind == "versions":
                self.showVersions(backend_jobs.finish_list_versions(job))
                self.ui.statusLabel.text = ""
            elif kind == "rollback":
                self.reportDone(backend_jobs.finish_rollback(job))
                self.populateModels()
                self.onRefreshVersions()
        except backend_jobs.BackendRunError as error:
            if outcome is not None and outcome.state == RunState.CANCELLED:
                self.reportDone("Cancelled.")
            else:
                self.reportDone("Failed.")
                details = {"detailedText": outcome.stderr_tail} if outcome is not None and outcome.stderr_tail else {}
                slicer.util.errorDisplay(str(error), **details)
        except USER_ERRORS as error:
            self.reportDone("Failed.")
            slicer.util.errorDisplay(str(error))
        except Exception as error:
            logger.exception("MultiModalSeg could not read the backend's result")
            self.reportDone("Failed.")
            slicer.util.errorDisplay(f"Could not read the result: {error}. See the Python console for details.")
        finally:
            self.updateButtonStates()

    def reportDone(self, message: str) -> None:
        self.ui.statusLabel.text = message
        self.appendLog(message)

    def appendLog(self, text: str) -> None:
        if hasattr(self, "ui"):
            self.ui.logTextEdit.appendPlainText(text)

    # -- overlays -----------------------------------------------------------------------------------------------

    def populateOverlays(self) -> None:
        """List the scene's overlay volumes (attention, probability, uncertainty, level set)."""
        if not hasattr(self, "ui"):
            return
        nodes = overlays.list_overlays(slicer.mrmlScene)
        choices = overlay_choices.overlay_choices(
            (node.GetID(), overlays.overlay_key_of(node), node.GetName()) for node in nodes)
        shown = slice_layers.shown_overlay(slicer.mrmlScene)
        wasBlocked = self.ui.overlayComboBox.blockSignals(True)
        self.ui.overlayComboBox.clear()
        self.ui.overlayComboBox.addItem(overlay_choices.NO_OVERLAY_TEXT, "")
        for choice in choices:
            self.ui.overlayComboBox.addItem(choice.text, choice.node_id)
        index = self.ui.overlayComboBox.findData(shown.GetID()) if shown is not None else 0
        self.ui.overlayComboBox.setCurrentIndex(max(index, 0))
        self.ui.overlayComboBox.blockSignals(wasBlocked)
        self.ui.overlayComboBox.enabled = bool(choices)

    def onOverlaySelected(self, index: int | None = None) -> None:
        nodeId = self.ui.overlayComboBox.currentData
        node = slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None
        if self._parameterNode is not None:
            self._parameterNode.overlayVolume = node
        self.showOverlay(node)

    def onOverlayOpacityChanged(self, value: float) -> None:
        nodeId = self.ui.overlayComboBox.currentData
        self.showOverlay(slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None)

    def showOverlay(self, node: Any) -> None:
        try:
            self.logic.showOverlay(node, self.ui.overlayOpacitySliderWidget.value)
        except USER_ERRORS as error:
            slicer.util.errorDisplay(str(error))

    # -- fine-tune cases ----------------------------------------------------------------------------------------

    def onFinetuneSectionToggled(self, collapsed: bool) -> None:
        if not collapsed:
            self.updateFinetuneCases()

    def updateFinetuneCases(self) -> None:
        """Labeled: the segmentations in the scene (the current one checked). Unlabeled: the other studies."""
        model = self.currentModel()
        current = self._parameterNode.outputSegmentation if self._parameterNode is not None else None
        wasBlocked = self.ui.labeledCasesListWidget.blockSignals(True)
        self.ui.labeledCasesListWidget.clear()
        labeledVolumeIds: set[str] = set()
        for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
            if node.GetAttribute(node_roles.ROLE_ATTRIBUTE) == node_roles.ROLE_ZERO_CONTOUR:
                continue
            item = qt.QListWidgetItem(node.GetName())
            item.setData(qt.Qt.UserRole, node.GetID())
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            isCurrent = current is not None and node.GetID() == current.GetID()
            item.setCheckState(qt.Qt.Checked if isCurrent else qt.Qt.Unchecked)
            if isCurrent and model is not None:
                labeledVolumeIds |= {v.GetID() for v in self.volumesOfSegmentation(node, model).values() if v}
            self.ui.labeledCasesListWidget.addItem(item)
        self.ui.labeledCasesListWidget.blockSignals(wasBlocked)

        self.ui.unlabeledCasesListWidget.clear()
        self._unlabeledCandidates = []
        if model is not None:
            for candidate in self.logic.casesInScene(self.candidateVolumes(), model):
                if labeledVolumeIds & set(candidate.volumes.values()):
                    continue
                complete = len(candidate.volumes) == len(model.modalities)
                item = qt.QListWidgetItem(f"{candidate.name} ({', '.join(candidate.volumes)})")
                item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
                item.setCheckState(qt.Qt.Checked if complete else qt.Qt.Unchecked)
                self.ui.unlabeledCasesListWidget.addItem(item)
                self._unlabeledCandidates.append(candidate)
        self.updateButtonStates()

    def checkedLabeledSegmentations(self) -> list[Any]:
        widget = self.ui.labeledCasesListWidget
        nodes = []
        for row in range(widget.count):
            item = widget.item(row)
            if item.checkState() == qt.Qt.Checked:
                node = slicer.mrmlScene.GetNodeByID(item.data(qt.Qt.UserRole))
                if node is not None:
                    nodes.append(node)
        return nodes

    def checkedUnlabeledCases(self) -> list[modality_matching.CaseCandidate]:
        widget = self.ui.unlabeledCasesListWidget
        return [candidate for row, candidate in enumerate(self._unlabeledCandidates)
                if row < widget.count and widget.item(row).checkState() == qt.Qt.Checked]

    def volumesOfSegmentation(self, segmentationNode: Any, model: model_catalog.ModelChoice) -> dict[str, Any]:
        """The volumes a segmentation was made from: the current inputs for the current output, else the
        study (or name group) of its reference geometry volume."""
        current = self._parameterNode.outputSegmentation if self._parameterNode is not None else None
        if current is not None and segmentationNode.GetID() == current.GetID():
            selected = {m: v for m, v in self.selectedVolumes(model).items() if v is not None}
            if selected:
                return selected
        return self.logic.volumesOfSegmentation(segmentationNode, self.candidateVolumes(), model)

    # -- versions -----------------------------------------------------------------------------------------------

    def onVersionsSectionToggled(self, collapsed: bool) -> None:
        if not collapsed and not self._versions:
            self.onRefreshVersions()

    def onRefreshVersions(self) -> None:
        model = self.currentModel()
        if model is None or self._job is not None:
            return
        self.startJob("versions", lambda: self.logic.startListVersions(model.model_id))

    def showVersions(self, versions: list[backend_jobs.ModelVersion]) -> None:
        self._versions = versions
        self.ui.versionsListWidget.clear()
        for version in versions:
            self.ui.versionsListWidget.addItem(version.describe())
        self.updateButtonStates()

    def selectedVersion(self) -> backend_jobs.ModelVersion | None:
        row = self.ui.versionsListWidget.currentRow
        return self._versions[row] if 0 <= row < len(self._versions) else None

    def onRollback(self) -> None:
        version, model = self.selectedVersion(), self.currentModel()
        if version is None or model is None:
            return
        if not slicer.util.confirmOkCancelDisplay(
                f"Make version {version.version} of {model.model_id} the current one? Newer versions are kept."):
            return
        self.startJob("rollback", lambda: self.logic.startRollback(model.model_id, version.version))


#
# MultiModalSegLogic
#


class MultiModalSegLogic(ScriptedLoadableModuleLogic):
    """What the panel asks for, delegated to the Qt-free code (backend jobs and scene logic)."""

    def __init__(self, backendSettings: BackendSettings | None = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleLayout = _moduleLayout()
        self.backendSettings = backendSettings or BackendSettings(
            library_parent_dir=self.moduleLayout.library_parent_dir,
            work_parent=Path(slicer.app.temporaryPath) / "MultiModalSeg")

    def getParameterNode(self) -> MultiModalSegParameterNode:
        return MultiModalSegParameterNode(super().getParameterNode())

    def models(self) -> list[model_catalog.ModelChoice]:
        return model_catalog.list_model_choices()

    def ensureDependencies(self, confirm) -> bool:
        return dependencies.ensure_backend_dependencies(self.moduleLayout.requirements_path, confirm)

    def startSegmentation(self, model: model_catalog.ModelChoice, volumes: dict[str, Any], device: str,
                          overlap: float, segmentationNode: Any = None) -> backend_jobs.PredictJob:
        return backend_jobs.start_predict(self.backendSettings, model.model_id, volumes, device=device,
                                          overlap=overlap, segmentation_node=segmentationNode)

    def finishSegmentation(self, job: backend_jobs.PredictJob) -> Any:
        """Load the result into the scene and show the reference image behind it."""
        loaded = backend_jobs.finish_predict(slicer.mrmlScene, job)
        slice_layers.show_background(slicer.mrmlScene, loaded.background_volume)
        return loaded

    def showOverlay(self, overlayNode: Any, opacity: float) -> None:
        slice_layers.show_overlay(slicer.mrmlScene, overlayNode, opacity)

    def casesInScene(self, volumes: list[Any], model: model_catalog.ModelChoice) -> list[Any]:
        return modality_matching.group_volumes_into_cases(
            [modality_matching.VolumeEntry(node.GetID(), node.GetName(), self.studyOf(node)) for node in volumes],
            model.modalities)

    def volumesOfSegmentation(self, segmentationNode: Any, volumes: list[Any],
                              model: model_catalog.ModelChoice) -> dict[str, Any]:
        reference = segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())
        if reference is None:
            return {}
        for candidate in self.casesInScene(volumes, model):
            if reference.GetID() in candidate.volumes.values():
                return {modality: slicer.mrmlScene.GetNodeByID(volumeId)
                        for modality, volumeId in candidate.volumes.items()}
        return {}

    @staticmethod
    def studyOf(node: Any) -> str:
        """The name of the subject-hierarchy study (or folder) holding ``node``; empty if none."""
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        if shNode is None:
            return ""
        parent = shNode.GetItemParent(shNode.GetItemByDataNode(node))
        if not parent or parent == shNode.GetSceneItemID():
            return ""
        return shNode.GetItemName(parent)

    def startFinetune(self, model: model_catalog.ModelChoice, labeled: list[Any], unlabeled: list[Any],
                      iterations: int, device: str) -> backend_jobs.FinetuneJob:
        return backend_jobs.start_finetune(slicer.mrmlScene, self.backendSettings, model.model_id,
                                           list(model.label_entries), labeled, unlabeled,
                                           reference_modality=model.reference_modality,
                                           iterations=iterations, device=device)

    def startListVersions(self, modelId: str) -> BackendProcess:
        return backend_jobs.start_list_versions(self.backendSettings, modelId)

    def startRollback(self, modelId: str, version: int) -> BackendProcess:
        return backend_jobs.start_rollback(self.backendSettings, modelId, version)


#
# MultiModalSegTest
#


class MultiModalSegTest(ScriptedLoadableModuleTest):
    """Self-test: sample data, the bundled model, overlays, a short fine-tuning and a rollback.

    The bodies are the functions of ``MultiModalSegModuleLib/self_test_steps.py``, which the
    headless pytest suite (``Testing/module``) runs too. Fine-tuning and rollback go to a
    temporary model store, so the user's model versions are never touched.
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()
        self.moduleLayout = _moduleLayout()
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
            finally:
                self.tearDown()

    def loadSample(self, case: sample_data.SampleCase) -> dict[str, Any]:
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
        self.assertTrue(dependencies.ensure_backend_dependencies(self.moduleLayout.requirements_path,
                                                                 confirm=lambda question: True))
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
