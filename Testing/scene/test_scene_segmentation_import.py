"""Label map -> segmentation node: names, colors, terminology, reference geometry, empty labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from scene_fake_result import LABELS, LIVER_TERMINOLOGY

from MultiModalSeg.MultiModalSegSceneLib.errors import SceneLogicError
from MultiModalSeg.MultiModalSegSceneLib.segment_labels import parse_labels
from MultiModalSeg.MultiModalSegSceneLib.segmentation_import import import_labelmap_file_as_segmentation
from MultiModalSeg.MultiModalSegSceneLib.slice_views import segment_voxel_counts
from MultiModalSeg.MultiModalSegSceneLib.terminology import terminology_tag
from MultiModalSeg.MultiModalSegSceneLib.volume_files import import_volume_file


def segments(segmentation_node: slicer.vtkMRMLSegmentationNode) -> list[slicer.vtkSegment]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]


def test_labelmap_becomes_named_colored_segments_on_the_input_grid(slicer_context, fake_result) -> None:
    scene = slicer_context.scene
    venous = import_volume_file(scene, fake_result["inputs"]["venous"])
    nodes_before = scene.GetNumberOfNodes()
    segmentation_node = import_labelmap_file_as_segmentation(
        scene, fake_result["result_dir"] / "labelmap.nii.gz", LABELS, venous, name="result")

    assert [segment.GetName() for segment in segments(segmentation_node)] == ["liver", "tumor"]
    np.testing.assert_allclose([segment.GetColor() for segment in segments(segmentation_node)],
                               [label["color"] for label in LABELS], atol=1e-6)
    counts = list(segment_voxel_counts(segmentation_node).values())
    assert counts == [int((fake_result["labelmap"] == 1).sum()), int((fake_result["labelmap"] == 2).sum())]
    # The reference geometry is the input volume, so Segment Editor edits on its grid.
    reference_role = segmentation_node.GetReferenceImageGeometryReferenceRole()
    assert segmentation_node.GetNodeReferenceID(reference_role) == venous.GetID()
    # Only the segmentation and its display node stay; the temporary label map is gone.
    assert scene.GetNumberOfNodes() == nodes_before + 2
    assert scene.GetFirstNodeByName("result label map") is None


def test_terminology_is_set_and_slicer_can_read_it(slicer_context, fake_result) -> None:
    scene = slicer_context.scene
    segmentation_node = import_labelmap_file_as_segmentation(
        scene, fake_result["result_dir"] / "labelmap.nii.gz", LABELS,
        import_volume_file(scene, fake_result["inputs"]["venous"]))
    liver = segments(segmentation_node)[0]
    assert liver.GetTerminology() == LIVER_TERMINOLOGY
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(liver.GetTerminology(), entry)
    assert entry.GetTypeObject().GetCodeMeaning() == "Liver"
    assert entry.GetTypeObject().GetCodeValue() == "10200004"
    assert entry.GetCategoryObject().GetCodingSchemeDesignator() == "SCT"
    # A label without terminology keeps Slicer's default for new segments.
    assert segments(segmentation_node)[1].GetTerminology() != LIVER_TERMINOLOGY


def test_labels_without_voxels_get_empty_segments_and_unknown_values_are_kept(
        slicer_context, tmp_path: Path) -> None:
    labelmap = np.zeros((4, 5, 6), dtype=np.uint8)
    labelmap[1:3, 1:3, 1:3] = 2
    labelmap[0, 0, 0] = 7
    path = tmp_path / "labelmap.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(labelmap), str(path))
    segmentation_node = import_labelmap_file_as_segmentation(slicer_context.scene, path, LABELS)

    assert [segment.GetName() for segment in segments(segmentation_node)] == ["liver", "tumor", "Label 7"]
    assert list(segment_voxel_counts(segmentation_node).values()) == [0, 8, 1]


def test_labelmap_on_another_grid_is_refused(slicer_context, fake_result, tmp_path: Path) -> None:
    scene = slicer_context.scene
    venous = import_volume_file(scene, fake_result["inputs"]["venous"])
    other = sitk.ReadImage(str(fake_result["result_dir"] / "labelmap.nii.gz"))
    other.SetOrigin([value + 2.0 for value in other.GetOrigin()])
    path = tmp_path / "shifted.nii.gz"
    sitk.WriteImage(other, str(path))
    with pytest.raises(SceneLogicError, match="belongs to another image"):
        import_labelmap_file_as_segmentation(scene, path, LABELS, venous)


@pytest.mark.parametrize("concept", [
    {"scheme": "SCT", "code": "10200004", "meaning": "Liver"},
    {"CodingSchemeDesignator": "SCT", "CodeValue": "10200004", "CodeMeaning": "Liver"},
    ["SCT", "10200004", "Liver"],
])
def test_terminology_mapping_spellings(concept) -> None:
    tag = terminology_tag({"category": ["SCT", "123037004", "Anatomical Structure"], "type": concept})
    assert tag == LIVER_TERMINOLOGY


def test_terminology_with_region_and_own_context() -> None:
    tag = terminology_tag({
        "context": "My list", "category": ["SCT", "49755003", "Morphologically Altered Structure"],
        "type": ["SCT", "108369006", "Neoplasm"], "typeModifier": ["SCT", "255470001", "Left"],
        "region": ["SCT", "10200004", "Liver"],
    })
    assert tag == ("My list~SCT^49755003^Morphologically Altered Structure~SCT^108369006^Neoplasm~SCT^255470001^Left"
                   "~Anatomic codes - DICOM master list~SCT^10200004^Liver~^^")
    assert terminology_tag(tag) == tag  # a Slicer string is used as is
    assert terminology_tag(None) is None and terminology_tag({}) is None


@pytest.mark.parametrize("terminology, message", [
    ("Liver", "7 fields"),
    ({"type": ["SCT", "10200004", "Liver"]}, "both 'category' and 'type'"),
    ({"category": ["SCT", "1", "a"], "type": "Liver"}, "write it as"),
    ({"category": ["SCT", "1", "a~b"], "type": ["SCT", "2", "b"]}, "separators"),
])
def test_bad_terminology_is_explained(terminology, message: str) -> None:
    with pytest.raises(SceneLogicError, match=message):
        terminology_tag(terminology, "liver")


@pytest.mark.parametrize("labels, message", [
    ([{"name": "liver"}], "needs at least a 'value' and a 'name'"),
    ([{"value": 0, "name": "background"}], "integers from 1 to 255"),
    ([{"value": 1, "name": "a"}, {"value": 1, "name": "b"}], "repeat"),
    ([{"value": 1, "name": "Liver"}, {"value": 2, "name": "liver"}], "repeat"),
    ([{"value": 1, "name": "a", "color": [1, 2]}], r"\[r, g, b\]"),
])
def test_bad_labels_are_explained(labels, message: str) -> None:
    with pytest.raises(SceneLogicError, match=message):
        parse_labels(labels)


def test_label_colors_in_0_255_and_missing_colors() -> None:
    parsed = parse_labels([{"value": 3, "name": "kidney", "color": [255, 0, 127.5]}, {"value": 4, "name": "x"}])
    assert parsed[0].color == (1.0, 0.0, 0.5)
    assert len(parsed[1].color) == 3


def test_result_into_the_users_segmentation_keeps_their_other_segments(slicer_context, fake_result) -> None:
    """The panel's output selector: the model's segments replace same-named ones, the rest stays."""
    from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result

    scene = slicer_context.scene
    venous = import_volume_file(scene, fake_result["inputs"]["venous"])
    users = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my work")
    users.CreateDefaultDisplayNodes()
    users.SetReferenceImageGeometryParameterFromVolumeNode(venous)
    users.SetNodeReferenceID(users.GetReferenceImageGeometryReferenceRole(), venous.GetID())
    users.GetSegmentation().AddEmptySegment("", "my notes", [0.1, 0.9, 0.1])
    users.GetSegmentation().AddEmptySegment("", "liver", [0.0, 0.0, 1.0])  # an old liver, to be replaced
    loaded = load_result(scene, fake_result["result_dir"], input_volume_nodes={"venous": venous},
                         segmentation_node=users)

    assert loaded.segmentation is users and users.GetName() == "my work"
    collection = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    names = [collection.GetItemAsObject(i).GetName() for i in range(collection.GetNumberOfItems())]
    assert not [name for name in names if name.endswith(" segmentation")], names  # the staging node is gone
    assert [segment.GetName() for segment in segments(users)] == ["liver", "tumor", "my notes"]
    counts = segment_voxel_counts(users)
    segmentation = users.GetSegmentation()
    assert counts[segmentation.GetSegmentIdBySegmentName("liver")] == int((fake_result["labelmap"] == 1).sum())
    assert counts[segmentation.GetSegmentIdBySegmentName("tumor")] == int((fake_result["labelmap"] == 2).sum())
    np.testing.assert_allclose(segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver")).GetColor(),
                               LABELS[0]["color"], atol=1e-6)


def test_result_into_a_segmentation_of_another_image_is_refused(slicer_context, fake_result) -> None:
    from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result

    scene = slicer_context.scene
    venous = import_volume_file(scene, fake_result["inputs"]["venous"])
    other = import_volume_file(scene, fake_result["inputs"]["arterial"])
    users = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn elsewhere")
    users.SetNodeReferenceID(users.GetReferenceImageGeometryReferenceRole(), other.GetID())
    users.GetSegmentation().AddEmptySegment("", "my notes", [0.1, 0.9, 0.1])

    with pytest.raises(SceneLogicError, match="another image"):
        load_result(scene, fake_result["result_dir"], input_volume_nodes={"venous": venous}, segmentation_node=users)
    assert [segment.GetName() for segment in segments(users)] == ["my notes"]
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1
