"""The MRML scene and application logic, from Slicer itself or built headless.

Inside the Slicer application the scene logic uses Slicer's own ``slicer.mrmlScene`` and
``slicer.app.applicationLogic()``. Outside it (pytest, the scene writer, ``make demo``)
there is no application, so :func:`create_headless_slicer` builds the few pieces the
scene logic needs from the ``slicer-core`` wheel, in the order Slicer's application does:

* a ``vtkMRMLScene`` with the default color nodes (Grey, Labels, PET-Heat, ...) and the
  default slice orientation presets (patient right on screen left, as in Slicer);
* a ``vtkSlicerApplicationLogic`` on that scene, with empty slice and view logic
  collections (the slice views add their logics there);
* the Colors module logic registered as module "Colors" *before* the Volumes logic (the
  Volumes logic looks it up and otherwise reports "invalid Colors module logic"), then the
  Segmentations logic;
* the slice-view displayable manager factory pointed at the application logic, so
  Slicer's own displayable managers can draw segment outlines in offscreen slice views.

Nothing here imports Qt; every class comes from the ``slicer-core`` wheel.
"""

from __future__ import annotations

from dataclasses import dataclass

import slicer
from vtkmodules.vtkCommonCore import vtkCollection

__all__ = ["SlicerContext", "create_headless_slicer", "current_slicer_context", "running_inside_slicer"]


@dataclass
class SlicerContext:
    """The scene and the logics the scene logic works with.

    ``colors_logic``, ``volumes_logic`` and ``segmentations_logic`` are kept here so they
    live as long as the scene (VTK objects without a Python reference are freed).
    """

    scene: slicer.vtkMRMLScene
    application_logic: slicer.vtkMRMLApplicationLogic
    colors_logic: object | None = None
    volumes_logic: object | None = None
    segmentations_logic: object | None = None
    headless: bool = True


def running_inside_slicer() -> bool:
    """True in the Slicer desktop application, where ``slicer.app`` exists."""
    return hasattr(slicer, "app") and hasattr(slicer, "mrmlScene")


def create_headless_slicer(scene: slicer.vtkMRMLScene | None = None) -> SlicerContext:
    """Build a scene and application logic that behave like Slicer's, without Qt.

    ``scene`` may be an existing scene (for example one about to import a ``.mrml``); a new
    one is made otherwise. Each call builds an independent context, so tests do not share
    state; only the displayable-manager factory is a process-wide singleton, and it is
    re-pointed at the newest application logic.
    """
    scene = scene if scene is not None else slicer.vtkMRMLScene()

    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    # The application logic owns a color logic; it adds Grey, Labels, PET-Heat, ... .
    application_logic.GetColorLogic().SetMRMLScene(scene)
    application_logic.GetColorLogic().AddDefaultColorNodes()
    application_logic.SetSliceLogics(vtkCollection())
    application_logic.SetViewLogics(vtkCollection())

    # Registered as module "Colors" before the Volumes logic asks for it.
    colors_logic = slicer.vtkMRMLColorLogic()
    colors_logic.SetMRMLApplicationLogic(application_logic)
    colors_logic.SetMRMLScene(scene)
    application_logic.SetModuleLogic("Colors", colors_logic)

    volumes_logic = slicer.vtkSlicerVolumesLogic()
    volumes_logic.SetMRMLScene(scene)
    volumes_logic.SetMRMLApplicationLogic(application_logic)
    application_logic.SetModuleLogic("Volumes", volumes_logic)

    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    segmentations_logic.SetMRMLApplicationLogic(application_logic)
    application_logic.SetModuleLogic("Segmentations", segmentations_logic)

    # Axial / Sagittal / Coronal presets with patient right on screen left, as Slicer.
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(application_logic)

    return SlicerContext(
        scene=scene,
        application_logic=application_logic,
        colors_logic=colors_logic,
        volumes_logic=volumes_logic,
        segmentations_logic=segmentations_logic,
        headless=True,
    )


def current_slicer_context() -> SlicerContext:
    """Slicer's own scene and application logic when running inside Slicer, else a new headless one."""
    if running_inside_slicer():
        return SlicerContext(
            scene=slicer.mrmlScene,
            application_logic=slicer.app.applicationLogic(),
            headless=False,
        )
    return create_headless_slicer()
