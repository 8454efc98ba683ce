"""Overlays configured as specified: color maps, windows, thresholds, composite nodes, zero contour."""

from __future__ import annotations

import numpy as np
import pytest
from slicer.util import arrayFromVolume

from MultiModalSeg.MultiModalSegSceneLib.color_maps import (
    DIVERGING_COLOR_NODE_NAME,
    HEAT_COLOR_NODE_NAME,
    diverging_color_node,
    heat_color_node,
)
from MultiModalSeg.MultiModalSegSceneLib.errors import SceneLogicError
from MultiModalSeg.MultiModalSegSceneLib.overlays import (
    DEFAULT_THRESHOLD_FRACTION,
    ZERO_CONTOUR_COLOR,
    list_overlays,
    overlay_key_of,
    zero_contour_of,
)
from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result
from MultiModalSeg.MultiModalSegSceneLib.slice_layers import (
    PREVIOUS_FOREGROUND_ATTRIBUTE,
    hide_overlay,
    set_overlay_opacity,
    show_background,
    show_overlay,
    shown_overlay,
    slice_composite_nodes,
)
from MultiModalSeg.MultiModalSegSceneLib.slice_views import segment_voxel_counts, slice_logics_for_views


@pytest.fixture()
def loaded(slicer_context, fake_result):
    slice_logics_for_views(slicer_context.scene, slicer_context.application_logic)
    return load_result(slicer_context.scene, fake_result["result_dir"])


def test_every_output_map_becomes_a_marked_overlay(loaded, slicer_context) -> None:
    expected = ["attention:arterial", "attention:venous", "probability:liver", "probability:tumor",
                "uncertainty", "level_set:tumor"]
    assert list(loaded.overlays) == expected
    assert [overlay_key_of(node) for node in list_overlays(slicer_context.scene)] == expected
    assert overlay_key_of(loaded.input_volumes["venous"]) is None


@pytest.mark.parametrize("key, window_max", [
    ("attention:venous", 1.0), ("probability:tumor", 1.0), ("uncertainty", None)])
def test_heat_overlays_use_the_heat_map_a_fixed_window_and_a_threshold(loaded, slicer_context, key, window_max) -> None:
    overlay = loaded.overlays[key]
    display = overlay.GetDisplayNode()
    assert display.GetColorNode().GetName() == HEAT_COLOR_NODE_NAME
    assert display.GetColorNode().IsA("vtkMRMLProceduralColorNode")
    if window_max is None:  # uncertainty: 0 .. its maximum
        window_max = float(arrayFromVolume(overlay).max())
        assert window_max == pytest.approx(0.3, abs=0.01)
    assert not display.GetAutoWindowLevel()
    assert display.GetWindowLevelMin() == pytest.approx(0.0)
    assert display.GetWindowLevelMax() == pytest.approx(window_max)
    assert display.GetApplyThreshold() and not display.GetAutoThreshold()
    assert display.GetLowerThreshold() == pytest.approx(DEFAULT_THRESHOLD_FRACTION * window_max)
    assert display.GetUpperThreshold() >= window_max


def test_level_set_is_diverging_centred_on_zero_with_an_outline_contour(loaded, slicer_context) -> None:
    level_set = loaded.overlays["level_set:tumor"]
    values = arrayFromVolume(level_set)
    display = level_set.GetDisplayNode()
    assert display.GetColorNode().GetName() == DIVERGING_COLOR_NODE_NAME
    assert display.GetLevel() == pytest.approx(0.0)
    assert display.GetWindow() == pytest.approx(2 * np.abs(values).max(), rel=1e-5)
    assert not display.GetApplyThreshold()

    contour = zero_contour_of(level_set)
    assert contour is not None and contour.GetID() == loaded.zero_contours["tumor"].GetID()
    segmentation = contour.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    assert segmentation.GetNthSegment(0).GetColor() == pytest.approx(ZERO_CONTOUR_COLOR)
    assert list(segment_voxel_counts(contour).values()) == [int((values < 0).sum())]
    contour_display = contour.GetDisplayNode()
    assert not contour_display.GetVisibility2DFill() and contour_display.GetVisibility2DOutline()
    assert not contour_display.GetVisibility()  # hidden until the level set is shown


def test_color_maps_run_dark_red_to_yellow_and_blue_white_red(slicer_context) -> None:
    heat = heat_color_node(slicer_context.scene).GetColorTransferFunction()
    low, high = heat.GetColor(0.0), heat.GetColor(1.0)
    assert low[0] > low[1] + 0.2 and low[0] > low[2] + 0.2  # dark red
    assert high[0] > 0.9 and high[1] > 0.9 and high[2] < 0.5  # yellow
    diverging = diverging_color_node(slicer_context.scene).GetColorTransferFunction()
    assert diverging.GetColor(0.0)[2] > diverging.GetColor(0.0)[0]  # blue
    assert diverging.GetColor(0.5) == pytest.approx((1.0, 1.0, 1.0))  # white in the middle
    assert diverging.GetColor(1.0)[0] > diverging.GetColor(1.0)[2]  # red
    # Asking again returns the same nodes instead of adding copies.
    assert heat_color_node(slicer_context.scene).GetID() == heat_color_node(slicer_context.scene).GetID()
    assert slicer_context.scene.GetNumberOfNodesByClass("vtkMRMLProceduralColorNode") >= 2


def test_show_overlay_sets_every_slice_views_foreground_and_opacity(loaded, slicer_context) -> None:
    scene = slicer_context.scene
    composite_nodes = slice_composite_nodes(scene)
    assert len(composite_nodes) == 3
    show_background(scene, loaded.input_volumes["venous"])
    show_overlay(scene, loaded.overlays["attention:venous"], opacity=0.35)

    for composite_node in composite_nodes:
        assert composite_node.GetBackgroundVolumeID() == loaded.input_volumes["venous"].GetID()
        assert composite_node.GetForegroundVolumeID() == loaded.overlays["attention:venous"].GetID()
        assert composite_node.GetForegroundOpacity() == pytest.approx(0.35)
    assert shown_overlay(scene).GetID() == loaded.overlays["attention:venous"].GetID()
    segmentation_display = loaded.segmentation.GetDisplayNode()
    assert not segmentation_display.GetVisibility2DFill() and segmentation_display.GetVisibility2DOutline()
    assert not loaded.zero_contours["tumor"].GetDisplayNode().GetVisibility()


def test_level_set_overlay_shows_its_zero_contour_and_none_hides_everything(loaded, slicer_context) -> None:
    scene = slicer_context.scene
    show_overlay(scene, loaded.overlays["level_set:tumor"], opacity=0.6)
    assert loaded.zero_contours["tumor"].GetDisplayNode().GetVisibility()

    show_overlay(scene, None)
    for composite_node in slice_composite_nodes(scene):
        assert not composite_node.GetForegroundVolumeID()
    assert shown_overlay(scene) is None
    assert not loaded.zero_contours["tumor"].GetDisplayNode().GetVisibility()
    assert loaded.segmentation.GetDisplayNode().GetVisibility2DFill()  # filled again without overlay


def test_show_overlay_refuses_bad_opacity_and_non_overlays(loaded, slicer_context) -> None:
    with pytest.raises(SceneLogicError, match="between 0 and 1"):
        show_overlay(slicer_context.scene, loaded.overlays["uncertainty"], opacity=1.5)
    with pytest.raises(SceneLogicError, match="not a MultiModalSeg overlay"):
        show_overlay(slicer_context.scene, loaded.input_volumes["venous"])


def test_hiding_gives_back_each_views_own_foreground_and_opacity_reaches_only_overlay_views(loaded,
                                                                                         slicer_context) -> None:
    """The user's own foreground volume (here the arterial phase in Red at 0.3) is never lost: showing an
    overlay remembers it, hiding restores it, and opacity changes skip views that do not show the overlay."""
    scene = slicer_context.scene
    red, yellow, green = slice_composite_nodes(scene)
    own = loaded.input_volumes["arterial"]
    red.SetForegroundVolumeID(own.GetID())
    red.SetForegroundOpacity(0.3)
    assert shown_overlay(scene) is None  # the user's volume is no overlay
    assert set_overlay_opacity(scene, None, 0.9) == 0 and red.GetForegroundOpacity() == pytest.approx(0.3)
    assert hide_overlay(scene) == 0 and red.GetForegroundVolumeID() == own.GetID()

    overlay = loaded.overlays["probability:tumor"]
    show_overlay(scene, overlay, opacity=0.5)
    assert red.GetAttribute(PREVIOUS_FOREGROUND_ATTRIBUTE) == f"{own.GetID()}|0.3"
    yellow.SetForegroundVolumeID(own.GetID())  # changed by hand while the overlay shows
    assert set_overlay_opacity(scene, overlay, 0.7) == 2
    assert [node.GetForegroundOpacity() for node in (red, green)] == pytest.approx([0.7, 0.7])
    assert yellow.GetForegroundOpacity() == pytest.approx(0.5)
    show_overlay(scene, loaded.overlays["uncertainty"], opacity=0.4)  # overlay to overlay: the user's stays remembered
    assert red.GetAttribute(PREVIOUS_FOREGROUND_ATTRIBUTE) == f"{own.GetID()}|0.3"

    assert hide_overlay(scene) == 3
    assert (red.GetForegroundVolumeID(), red.GetForegroundOpacity()) == (own.GetID(), pytest.approx(0.3))
    assert not green.GetForegroundVolumeID() and red.GetAttribute(PREVIOUS_FOREGROUND_ATTRIBUTE) is None
    assert shown_overlay(scene) is None
