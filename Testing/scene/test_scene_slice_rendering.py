"""A Red slice view rendered offscreen by Slicer's pipeline: heat inside the lesion, outline around it.

The picture is read back from the PNG file and checked pixel by pixel at places computed
from the slice node's own XY-to-RAS matrix: the tumor centre (heat over grey), a ring at
the tumor radius (the tumor segment's outline color), and liver tissue far from the tumor
(plain grey: the overlay is transparent below its threshold and no outline is there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOImage import vtkPNGReader

from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result
from MultiModalSeg.MultiModalSegSceneLib.slice_layers import show_background, show_overlay
from MultiModalSeg.MultiModalSegSceneLib.slice_rendering import render_slice_views
from MultiModalSeg.MultiModalSegSceneLib.slice_views import (
    center_slice_views,
    fit_slice_views,
    largest_segment_center,
    slice_logics_for_views,
)

SIZE = 256
TUMOR_RGB = np.array([0.9, 0.2, 0.2]) * 255


def read_png(path: Path) -> np.ndarray:
    """RGB pixels as ``[y, x, 3]`` with y = 0 at the bottom, like the slice view's XY coordinates."""
    reader = vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return pixels[..., :3].astype(int)


def xy_of_ras(slice_node, ras: np.ndarray) -> tuple[int, int]:
    """Pixel (x, y) at which a RAS point (projected onto the slice) is drawn."""
    matrix = slice_node.GetXYToRAS()
    xy_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    x, y, _, _ = np.linalg.inv(xy_to_ras) @ np.array([*ras, 1.0])
    return round(x), round(y)


@pytest.fixture()
def red_view_picture(slicer_context, fake_result, tmp_path: Path):
    scene = slicer_context.scene
    slice_logics = slice_logics_for_views(scene, slicer_context.application_logic)
    loaded = load_result(scene, fake_result["result_dir"])
    show_background(scene, loaded.input_volumes["venous"])
    show_overlay(scene, loaded.overlays["probability:tumor"], opacity=0.6)
    fit_slice_views(slice_logics, SIZE, SIZE)
    segment_id, center = largest_segment_center(loaded.segmentation)
    assert loaded.segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "liver"
    center_slice_views(slice_logics, center)
    pictures = render_slice_views(slicer_context.application_logic, {"Red": slice_logics["Red"]}, tmp_path,
                                  SIZE, SIZE)
    return read_png(pictures["Red"]), slice_logics["Red"].GetSliceNode(), center


def test_red_view_shows_heat_inside_the_lesion_and_its_outline_around_it(red_view_picture, fake_result) -> None:
    pixels, slice_node, liver_center = red_view_picture
    assert pixels.shape == (SIZE, SIZE, 3)
    tumor_x, tumor_y = xy_of_ras(slice_node, fake_result["tumor_center_ras"])

    # Heat (probability ~1: yellow) blended over grey at the tumor centre.
    red, green, blue = pixels[tumor_y, tumor_x]
    assert red > blue + 60 and green > blue + 30, pixels[tumor_y, tumor_x]

    # The tumor segment's outline (its own color, opaque) on a ring at the tumor radius, and nowhere
    # in the middle of the tumor.
    mm_per_pixel = slice_node.GetFieldOfView()[0] / slice_node.GetDimensions()[0]
    radius_px = 7.0 / mm_per_pixel
    y, x = np.mgrid[:SIZE, :SIZE]
    distance = np.hypot(x - tumor_x, y - tumor_y)
    outline = np.all(np.abs(pixels - TUMOR_RGB) < 30, axis=-1)
    ring = (distance > 0.6 * radius_px) & (distance < 1.4 * radius_px)
    assert outline[ring].sum() > 2 * np.pi * radius_px * 0.8, (outline[ring].sum(), radius_px)
    assert outline[distance < 0.4 * radius_px].sum() == 0
    assert outline[distance > 2.0 * radius_px].sum() == 0

    # Liver tissue 15 mm to the patient's left of the liver centre, far from the tumor: plain grey.
    far_x, far_y = xy_of_ras(slice_node, liver_center - np.array([15.0, 0.0, 0.0]))
    far = pixels[far_y, far_x]
    assert far.max() - far.min() <= 2 and far.max() > 20, far


def test_patient_right_is_on_screen_left(red_view_picture, fake_result) -> None:
    pixels, slice_node, liver_center = red_view_picture
    liver_x, _ = xy_of_ras(slice_node, liver_center)
    assert abs(liver_x - SIZE / 2) <= 2  # the view is centred on the liver
    # The tumor lies to the patient's right (+R) of the liver: its heat must be on the left half.
    warm = (pixels[..., 0] > pixels[..., 2] + 60) & (pixels[..., 1] > pixels[..., 2] + 30)
    assert warm.sum() > 50
    assert np.argwhere(warm)[:, 1].mean() < SIZE / 2 - 10
