"""Volume nodes <-> files: identical voxels, identical IJK-to-RAS, LPS in the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from slicer.util import arrayFromVolume, updateVolumeFromArray
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from MultiModalSeg.MultiModalSegSceneLib.errors import SceneLogicError
from MultiModalSeg.MultiModalSegSceneLib.volume_files import (
    export_input_volumes,
    export_volume_node,
    file_stem,
    import_volume_file,
)
from MultiModalSeg.MultiModalSegSceneLib.volume_geometry import (
    ijk_to_ras_matrix,
    ijk_to_world_matrix,
    ras_of_ijk,
    same_geometry,
    set_ijk_to_ras_matrix,
)

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def oblique_ijk_to_ras() -> np.ndarray:
    """A rotated grid with spacing (0.7, 1.1, 3.0) mm and an off-centre origin."""
    angle = np.radians(25.0)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([0.7, 1.1, 3.0])
    matrix[:3, 3] = (-41.5, 17.25, 88.0)
    return matrix


def make_volume(scene: slicer.vtkMRMLScene, name: str = "venous") -> slicer.vtkMRMLScalarVolumeNode:
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    rng = np.random.default_rng(3)
    updateVolumeFromArray(volume, rng.integers(-1000, 2000, size=(9, 11, 13)).astype(np.int16))
    set_ijk_to_ras_matrix(volume, oblique_ijk_to_ras())
    return volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_volume_round_trip_keeps_voxels_and_ijk_to_ras(slicer_context, tmp_path: Path, suffix: str) -> None:
    scene = slicer_context.scene
    volume = make_volume(scene)
    path = export_volume_node(volume, tmp_path / f"venous{suffix}")
    loaded = import_volume_file(scene, path)

    assert loaded.GetName() == "venous"
    assert loaded.GetStorageNode() is None  # temporary files are not where Slicer would save
    np.testing.assert_array_equal(arrayFromVolume(loaded), arrayFromVolume(volume))
    assert arrayFromVolume(loaded).dtype == np.int16
    np.testing.assert_allclose(ijk_to_ras_matrix(loaded), ijk_to_ras_matrix(volume), atol=1e-5)
    assert same_geometry(loaded, volume)


def test_exported_file_is_in_lps_where_itk_expects_it(slicer_context, tmp_path: Path) -> None:
    volume = make_volume(slicer_context.scene)
    image = sitk.ReadImage(str(export_volume_node(volume, tmp_path / "venous.nii.gz")))
    matrix = oblique_ijk_to_ras()

    np.testing.assert_allclose(image.GetOrigin(), LPS_FROM_RAS @ matrix[:3, 3], atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 1.1, 3.0), atol=1e-5)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3),
                               LPS_FROM_RAS @ matrix[:3, :3] @ np.diag([1 / 0.7, 1 / 1.1, 1 / 3.0]), atol=1e-5)
    # numpy (z, y, x) order on both sides, and one voxel at the same physical place.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), arrayFromVolume(volume))
    index = (12, 3, 7)
    lps = np.array(image.TransformIndexToPhysicalPoint(index))
    np.testing.assert_allclose(LPS_FROM_RAS @ lps, ras_of_ijk(volume, index), atol=1e-4)


def test_linear_parent_transform_is_baked_into_the_file(slicer_context, tmp_path: Path) -> None:
    scene = slicer_context.scene
    volume = make_volume(scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 30.0)
    shift.SetElement(2, 3, -5.0)
    transform.SetMatrixTransformToParent(shift)
    volume.SetAndObserveTransformNodeID(transform.GetID())

    loaded = import_volume_file(scene, export_volume_node(volume, tmp_path / "moved.nii.gz"))

    expected = oblique_ijk_to_ras()
    expected[:3, 3] += (30.0, 0.0, -5.0)
    np.testing.assert_allclose(ijk_to_ras_matrix(loaded), expected, atol=1e-4)
    np.testing.assert_allclose(ijk_to_world_matrix(volume), expected, atol=1e-9)
    np.testing.assert_allclose(ijk_to_ras_matrix(volume), oblique_ijk_to_ras(), atol=1e-9)  # node untouched


def test_label_map_file_imports_as_label_map_node(slicer_context, tmp_path: Path) -> None:
    scene = slicer_context.scene
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    updateVolumeFromArray(labels, np.arange(60, dtype=np.uint8).reshape(3, 4, 5) % 3)
    loaded = import_volume_file(scene, export_volume_node(labels, tmp_path / "labels.nii.gz"), labelmap=True)
    assert loaded.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(arrayFromVolume(loaded), arrayFromVolume(labels))


def test_user_errors_say_what_to_do(slicer_context, tmp_path: Path) -> None:
    scene = slicer_context.scene
    with pytest.raises(SceneLogicError, match="does not exist"):
        import_volume_file(scene, tmp_path / "missing.nii.gz")
    not_an_image = tmp_path / "notes.nii.gz"
    not_an_image.write_text("not an image")
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(SceneLogicError, match="Could not read"):
        import_volume_file(scene, not_an_image)
    assert scene.GetNumberOfNodes() == nodes_before
    with pytest.raises(SceneLogicError, match="file name ending"):
        export_volume_node(make_volume(scene), tmp_path / "venous.png")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    updateVolumeFromArray(rgb, np.zeros((2, 3, 4, 3), dtype=np.uint8))
    with pytest.raises(SceneLogicError, match="Vector to Scalar"):
        export_volume_node(rgb, tmp_path / "photo.nii.gz")


def test_file_stem_strips_double_suffixes() -> None:
    assert file_stem("/data/case 1/venous.nii.gz") == "venous"
    assert file_stem("seg.seg.nrrd") == "seg"
    assert file_stem("t1.nrrd") == "t1"


def test_input_volumes_are_written_per_modality_for_predict(slicer_context, tmp_path: Path) -> None:
    scene = slicer_context.scene
    paths = export_input_volumes({"arterial": make_volume(scene, "a"), "venous": None, "T1 ce": make_volume(scene)},
                                 tmp_path / "inputs")
    assert list(paths) == ["arterial", "T1 ce"]
    assert paths["T1 ce"] == tmp_path / "inputs" / "T1_ce.nii.gz" and paths["T1 ce"].is_file()
    with pytest.raises(SceneLogicError, match="select at least one"):
        export_input_volumes({"venous": None}, tmp_path)
