"""The scene writer: result folder -> scene.mrml + files + pictures, reloaded in a fresh scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scene_fake_result import LIVER_TERMINOLOGY
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOImage import vtkPNGReader

from MultiModalSeg.MultiModalSegSceneLib.color_maps import HEAT_COLOR_NODE_NAME
from MultiModalSeg.MultiModalSegSceneLib.errors import SceneLogicError
from MultiModalSeg.MultiModalSegSceneLib.headless import create_headless_slicer
from MultiModalSeg.MultiModalSegSceneLib.node_roles import ROLE_ATTRIBUTE, ROLE_ZERO_CONTOUR
from MultiModalSeg.MultiModalSegSceneLib.overlays import list_overlays, overlay_key_of
from MultiModalSeg.MultiModalSegSceneLib.scene_files import load_scene
from MultiModalSeg.MultiModalSegSceneLib.scene_writer import choose_overlay, main
from MultiModalSeg.MultiModalSegSceneLib.slice_layers import slice_composite_nodes
from MultiModalSeg.MultiModalSegSceneLib.slice_rendering import render_slice_views
from MultiModalSeg.MultiModalSegSceneLib.slice_views import slice_logics_for_views

PICTURE_SIZE = 192


def read_png(path: Path) -> np.ndarray:
    reader = vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    width, height, _ = reader.GetOutput().GetDimensions()
    return vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).reshape(height, width, -1)[..., :3].astype(int)


@pytest.fixture(scope="module")
def written_scene(fake_result, tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("scene-writer")
    import io
    from contextlib import redirect_stdout

    stdout = io.StringIO()
    with redirect_stdout(stdout):
        exit_code = main([str(fake_result["result_dir"]), "--output", str(output / "scene.mrml"),
                          "--pictures", str(output), "--size", str(PICTURE_SIZE), "--opacity", "0.45"])
    return {"exit_code": exit_code, "event": json.loads(stdout.getvalue().strip().splitlines()[-1]), "folder": output}


def test_writer_reports_the_scene_and_three_pictures(written_scene) -> None:
    assert written_scene["exit_code"] == 0
    event = written_scene["event"]
    assert event["event"] == "result"
    assert event["overlay"] == "attention:arterial"
    assert set(event["pictures"]) == {"Red", "Yellow", "Green"}
    for view in ("red", "yellow", "green"):
        pixels = read_png(written_scene["folder"] / f"slice_{view}.png")
        assert pixels.shape == (PICTURE_SIZE, PICTURE_SIZE, 3) and pixels.max() > 50


def test_scene_file_uses_relative_paths(written_scene) -> None:
    folder = written_scene["folder"]
    mrml = (folder / "scene.mrml").read_text()
    assert str(folder) not in mrml
    assert 'fileName="scene_data/' in mrml
    for data_file in (folder / "scene_data").iterdir():
        assert f"scene_data/{data_file.name}" in mrml


def test_reloaded_scene_has_the_same_nodes_and_display_settings(written_scene) -> None:
    context = create_headless_slicer()
    scene = load_scene(context.scene, written_scene["folder"] / "scene.mrml")

    venous = scene.GetFirstNodeByName("venous")
    assert venous is not None and venous.GetImageData().GetDimensions() == (80, 72, 24)
    segmentation_node = scene.GetFirstNodeByName("fake-model segmentation")
    segmentation = segmentation_node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] \
        == ["liver", "tumor"]
    assert segmentation.GetNthSegment(1).GetColor() == pytest.approx((0.9, 0.2, 0.2))
    assert segmentation.GetNthSegment(0).GetTerminology() == LIVER_TERMINOLOGY
    reference_role = segmentation_node.GetReferenceImageGeometryReferenceRole()
    assert segmentation_node.GetNodeReference(reference_role).GetName() == "venous"
    assert not segmentation_node.GetDisplayNode().GetVisibility2DFill()  # outlines while an overlay is shown

    assert [overlay_key_of(node) for node in list_overlays(scene)] == [
        "attention:arterial", "attention:venous", "probability:liver", "probability:tumor",
        "uncertainty", "level_set:tumor"]
    attention = scene.GetFirstNodeByName("arterial attention")
    display = attention.GetDisplayNode()
    heat = display.GetColorNode()
    assert heat.GetName() == HEAT_COLOR_NODE_NAME and heat.IsA("vtkMRMLProceduralColorNode")
    assert heat.GetColorTransferFunction().GetSize() == 4
    assert heat.GetColorTransferFunction().GetColor(1.0) == pytest.approx((1.0, 1.0, 0.25), abs=1e-3)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.05)
    assert display.GetWindowLevelMax() == pytest.approx(1.0) and not display.GetAutoWindowLevel()

    composite_nodes = slice_composite_nodes(scene)
    assert sorted(node.GetLayoutName() for node in composite_nodes) == ["Green", "Red", "Yellow"]
    for composite_node in composite_nodes:
        assert scene.GetNodeByID(composite_node.GetBackgroundVolumeID()).GetName() == "venous"
        assert scene.GetNodeByID(composite_node.GetForegroundVolumeID()).GetName() == "arterial attention"
        assert composite_node.GetForegroundOpacity() == pytest.approx(0.45)

    contours = [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    contours = [node for node in contours if node.GetAttribute(ROLE_ATTRIBUTE) == ROLE_ZERO_CONTOUR]
    assert len(contours) == 1 and not contours[0].GetDisplayNode().GetVisibility2DFill()
    level_set = scene.GetFirstNodeByName("tumor level set")
    assert level_set.GetNodeReference("MultiModalSeg.zeroContour").GetID() == contours[0].GetID()


def test_reloaded_scene_renders_the_same_picture(written_scene) -> None:
    context = create_headless_slicer()
    scene = load_scene(context.scene, written_scene["folder"] / "scene.mrml")
    slice_logics = slice_logics_for_views(scene, context.application_logic, ["Red"])
    pictures = render_slice_views(context.application_logic, slice_logics, written_scene["folder"] / "reloaded",
                                  PICTURE_SIZE, PICTURE_SIZE)
    original = read_png(written_scene["folder"] / "slice_red.png")
    reloaded = read_png(pictures["Red"])
    assert np.abs(original - reloaded).mean() < 1.0


def test_user_errors_exit_with_code_2_and_a_sentence(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path), "--output", str(tmp_path / "scene.mrml")]) == 2
    event = json.loads(capsys.readouterr().out.strip())
    assert event["event"] == "error" and "result.json" in event["message"]


def test_overlay_choice() -> None:
    overlays = {"probability:tumor": 1, "uncertainty": 2, "level_set:tumor": 3}
    assert choose_overlay(overlays, None) == "level_set:tumor"
    assert choose_overlay(overlays, "uncertainty") == "uncertainty"
    assert choose_overlay(overlays, "none") is None
    with pytest.raises(SceneLogicError, match="choose one of: probability:tumor, uncertainty, level_set:tumor"):
        choose_overlay(overlays, "attention:venous")
