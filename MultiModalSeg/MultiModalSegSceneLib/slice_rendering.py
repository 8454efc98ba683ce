"""Offscreen pictures of slice views, drawn by Slicer's own slice pipeline and displayable managers.

A slice view in Slicer is a ``vtkMRMLSliceLogic`` (which reslices the background and
foreground volumes, applies their color maps, thresholds and the composite node's
opacity, and outputs one RGBA image) plus a group of displayable managers that draw
everything else into the same renderer; ``vtkMRMLSegmentationsDisplayableManager2D``
draws segment fills and outlines. This module builds that pair around an offscreen render
window, the way Slicer's slice widget does without its Qt parts, so the pictures show
exactly what Slicer shows: patient right on screen left, the same colors and outlines.

Headless only: inside the Slicer application, capture the real views instead (Screen
Capture module, or ``slicer.app.layoutManager().sliceWidget("Red").sliceView()``); the
slice logics there belong to the layout and need no second renderer.

Rendering uses EGL (Mesa llvmpipe on machines without a GPU): ``VTK_DEFAULT_OPENGL_WINDOW``
is set to ``vtkEGLRenderWindow`` when unset, before the first render window is created,
which skips VTK's failing X11 attempt. It needs the system libraries ``libEGL.so.1`` and
Mesa's EGL driver (Debian/Ubuntu: ``libegl1 libegl-mesa0 libgl1-mesa-dri``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import slicer
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL render window)
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleUser
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingCore import (
    vtkActor2D,
    vtkImageMapper,
    vtkRenderer,
    vtkRenderWindow,
    vtkRenderWindowInteractor,
    vtkWindowToImageFilter,
)

from .errors import SceneLogicError

__all__ = ["SLICE_DISPLAYABLE_MANAGERS", "OffscreenSliceView", "render_slice_views"]

SLICE_DISPLAYABLE_MANAGERS = (
    "vtkMRMLSegmentationsDisplayableManager2D",
    "vtkMRMLModelSliceDisplayableManager",
)
"""Displayable managers drawn on top of the resliced volumes: segments, and model intersections."""


class OffscreenSliceView:
    """One slice view (its slice logic) rendered into an offscreen window of ``width`` x ``height``."""

    def __init__(
        self,
        slice_logic: slicer.vtkMRMLSliceLogic,
        application_logic: slicer.vtkMRMLApplicationLogic,
        width: int = 512,
        height: int = 512,
    ) -> None:
        self.slice_logic = slice_logic
        self.width = int(width)
        self.height = int(height)

        self.render_window = vtkRenderWindow()
        self.render_window.SetOffScreenRendering(True)
        self.render_window.SetMultiSamples(0)
        self.render_window.SetSize(self.width, self.height)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.render_window.AddRenderer(self.renderer)
        # The segmentations displayable manager reads the interactor; a slice view always has one.
        self.interactor = vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.render_window)
        self.interactor.SetInteractorStyle(vtkInteractorStyleUser())

        # The resliced, color-mapped, blended volume layers: one RGBA image in screen pixels.
        self.image_mapper = vtkImageMapper()
        self.image_mapper.SetColorWindow(255)
        self.image_mapper.SetColorLevel(127.5)
        self.image_actor = vtkActor2D()
        self.image_actor.SetMapper(self.image_mapper)
        self.image_actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(self.image_actor)

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(application_logic)
        for manager_name in SLICE_DISPLAYABLE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager_name):
                factory.RegisterDisplayableManager(manager_name)
        self.displayable_managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.displayable_managers.Initialize(factory, self.renderer)
        self.displayable_managers.SetMRMLDisplayableNode(slice_logic.GetSliceNode())

    def render(self) -> None:
        """Draw the view's current state (slice position, layers, segments) into the window."""
        slice_node = self.slice_logic.GetSliceNode()
        dimensions = slice_node.GetDimensions()
        if (dimensions[0], dimensions[1]) != (self.width, self.height):
            self.slice_logic.ResizeSliceNode(self.width, self.height)
        connection = self.slice_logic.GetImageDataConnection()
        self.image_mapper.SetInputConnection(connection)
        self.image_actor.SetVisibility(connection is not None)
        self.render_window.Render()

    def save_png(self, path: str | Path) -> Path:
        """Render and write the view to a PNG file (RGB); returns the absolute path."""
        path = Path(path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.render()
        grabber = vtkWindowToImageFilter()
        grabber.SetInput(self.render_window)
        grabber.SetInputBufferTypeToRGB()
        grabber.ReadFrontBufferOff()
        grabber.Update()
        writer = vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(grabber.GetOutputPort())
        writer.Write()
        if writer.GetErrorCode() != 0 or not path.is_file():
            raise SceneLogicError(f"Could not write the picture {path}; check that the folder is writable.")
        return path

    def close(self) -> None:
        """Release the displayable managers and the OpenGL context."""
        self.displayable_managers.SetMRMLDisplayableNode(None)
        self.render_window.Finalize()


def render_slice_views(
    application_logic: slicer.vtkMRMLApplicationLogic,
    slice_logics: Mapping[str, slicer.vtkMRMLSliceLogic],
    output_folder: str | Path,
    width: int = 512,
    height: int = 512,
    file_name: str = "slice_{view}.png",
) -> dict[str, Path]:
    """Render each slice view to ``output_folder/file_name`` (``{view}`` -> ``red``, ``yellow``, ...).

    The views are drawn as they are: position them first (:mod:`.slice_views`). Returns the
    PNG path of each view name.
    """
    pictures: dict[str, Path] = {}
    for view_name, slice_logic in slice_logics.items():
        view = OffscreenSliceView(slice_logic, application_logic, width, height)
        try:
            pictures[view_name] = view.save_png(Path(output_folder) / file_name.format(view=view_name.lower()))
        finally:
            view.close()
    return pictures
