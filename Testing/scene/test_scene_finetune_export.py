"""Fine-tune export round trip: segmentation + volumes -> files + cases.json -> the same voxels back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from scene_fake_result import LABELS
from slicer.util import updateVolumeFromArray

from MultiModalSeg.MultiModalSegSceneLib.errors import SceneLogicError
from MultiModalSeg.MultiModalSegSceneLib.finetune_export import (
    LabeledCase,
    UnlabeledCase,
    export_finetune_cases,
    segment_ids_for_labels,
)
from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result
from MultiModalSeg.MultiModalSegSceneLib.segment_labels import parse_labels
from MultiModalSeg.MultiModalSegSceneLib.volume_files import import_volume_file


@pytest.fixture()
def loaded(slicer_context, fake_result):
    return load_result(slicer_context.scene, fake_result["result_dir"])


def test_labeled_and_unlabeled_cases_round_trip(slicer_context, loaded, fake_result, tmp_path: Path) -> None:
    scene = slicer_context.scene
    other_study = import_volume_file(scene, fake_result["inputs"]["arterial"], name="other arterial")
    nodes_before = scene.GetNumberOfNodes()
    case_list = export_finetune_cases(
        scene, tmp_path / "finetune", LABELS,
        [LabeledCase("case 1", loaded.segmentation, loaded.input_volumes)],
        [UnlabeledCase("case 2", {"arterial": other_study})],
        reference_modality="venous")

    assert scene.GetNumberOfNodes() == nodes_before  # temporary label map and color table removed
    entries = json.loads(case_list.read_text())
    assert [entry["id"] for entry in entries] == ["case 1", "case 2"]
    assert set(entries[0]["images"]) == {"arterial", "venous"}
    assert entries[1]["label"] is None and list(entries[1]["images"]) == ["arterial"]
    for entry in entries:
        for path in [*entry["images"].values(), entry["label"]]:
            assert path is None or (Path(path).is_absolute() and Path(path).is_file())

    label = sitk.ReadImage(entries[0]["label"])
    venous = sitk.ReadImage(fake_result["inputs"]["venous"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), fake_result["labelmap"])
    np.testing.assert_allclose(label.GetOrigin(), venous.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(label.GetDirection(), venous.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(label.GetSpacing(), venous.GetSpacing(), atol=1e-5)
    for modality in ("arterial", "venous"):
        exported = sitk.ReadImage(entries[0]["images"][modality])
        np.testing.assert_array_equal(sitk.GetArrayFromImage(exported),
                                      sitk.GetArrayFromImage(sitk.ReadImage(fake_result["inputs"][modality])))


def test_segments_match_labels_by_name_ignoring_case_and_spaces(loaded) -> None:
    segmentation = loaded.segmentation.GetSegmentation()
    segmentation.GetNthSegment(1).SetName("  Tumor ")
    ids = segment_ids_for_labels(loaded.segmentation, parse_labels(LABELS))
    assert ids == {1: segmentation.GetNthSegmentID(0), 2: segmentation.GetNthSegmentID(1)}


def test_overlapping_segments_take_the_later_labels_value(slicer_context, tmp_path: Path) -> None:
    scene = slicer_context.scene
    image = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "venous")
    updateVolumeFromArray(image, np.zeros((6, 7, 8), dtype=np.float32))
    image.SetSpacing(0.8, 0.9, 2.0)
    liver = np.zeros((6, 7, 8), dtype=np.uint8)
    liver[1:5, 1:6, 1:7] = 1  # the liver segment covers the tumor too
    tumor = np.zeros_like(liver)
    tumor[2:4, 2:4, 2:4] = 1
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(image)
    for name, mask in (("liver", liver), ("tumor", tumor)):
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
        labelmap.CopyOrientation(image)
        updateVolumeFromArray(labelmap, mask)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node)
        segmentation = segmentation_node.GetSegmentation()
        segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1).SetName(name)
    case = [LabeledCase("c", segmentation_node, {"venous": image})]

    def exported(labels: list, folder: str) -> np.ndarray:
        case_list = export_finetune_cases(scene, tmp_path / folder, labels, case)
        return sitk.GetArrayFromImage(sitk.ReadImage(json.loads(case_list.read_text())[0]["label"]))

    manifest_order = exported(LABELS, "a")  # liver, then tumor: the tumor stays tumor
    np.testing.assert_array_equal(manifest_order, np.where(tumor > 0, 2, liver))
    liver_last = exported([LABELS[1], LABELS[0]], "b")  # tumor, then liver: liver overwrites it
    np.testing.assert_array_equal(liver_last, liver)


def test_unknown_segment_names_are_explained_or_ignored(slicer_context, loaded, tmp_path: Path) -> None:
    segmentation = loaded.segmentation.GetSegmentation()
    segmentation.AddEmptySegment("", "spleen", (0.1, 0.5, 0.1))
    case = LabeledCase("c", loaded.segmentation, loaded.input_volumes)
    with pytest.raises(SceneLogicError, match="'spleen' .* not one of the model's labels"):
        export_finetune_cases(slicer_context.scene, tmp_path, LABELS, [case])
    export_finetune_cases(slicer_context.scene, tmp_path, LABELS, [case], unknown_segments="ignore")


def test_empty_segmentation_and_missing_cases_are_explained(slicer_context, loaded, tmp_path: Path) -> None:
    scene = slicer_context.scene
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    empty.GetSegmentation().AddEmptySegment("", "liver", (1, 0, 0))
    with pytest.raises(SceneLogicError, match="no voxels"):
        export_finetune_cases(scene, tmp_path, LABELS, [LabeledCase("c", empty, loaded.input_volumes)])
    with pytest.raises(SceneLogicError, match="at least one labeled case"):
        export_finetune_cases(scene, tmp_path, LABELS, [])
    with pytest.raises(SceneLogicError, match="no image volume"):
        export_finetune_cases(scene, tmp_path, LABELS, [LabeledCase("c", loaded.segmentation, {})])
    with pytest.raises(SceneLogicError, match="repeat"):
        export_finetune_cases(scene, tmp_path, LABELS, [LabeledCase("a b", loaded.segmentation, loaded.input_volumes)],
                              [UnlabeledCase("A_B", loaded.input_volumes)])
