"""Outputs land on the input's voxels for an oblique, anisotropic input.

The fake input is rotated about two axes with spacing (0.9, 0.8, 2.5) mm; any mix-up of
LPS and RAS, of (x, y, z) and (z, y, x), or of spacing would move the segment away from
the voxels the label map marks.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from slicer.util import arrayFromVolume

from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result
from MultiModalSeg.MultiModalSegSceneLib.slice_views import segment_mask
from MultiModalSeg.MultiModalSegSceneLib.volume_geometry import ijk_to_ras_matrix, ras_of_ijk

RAS_FROM_LPS = np.array([-1.0, -1.0, 1.0])


def test_oblique_input_is_really_oblique_and_anisotropic(fake_result) -> None:
    image = sitk.ReadImage(fake_result["inputs"]["venous"])
    assert not np.allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3), atol=0.1)
    assert len(set(np.round(image.GetSpacing(), 3))) == 3


def test_a_label_voxel_has_the_inputs_ras_position(slicer_context, fake_result) -> None:
    loaded = load_result(slicer_context.scene, fake_result["result_dir"])
    venous = loaded.input_volumes["venous"]
    image = sitk.ReadImage(fake_result["inputs"]["venous"])
    labelmap = fake_result["labelmap"]

    # The input volume sits where ITK puts the file (LPS -> RAS), voxel by voxel.
    k, j, i = (int(v) for v in np.argwhere(labelmap == 2)[0])
    itk_ras = np.array(image.TransformIndexToPhysicalPoint((i, j, k))) * RAS_FROM_LPS
    np.testing.assert_allclose(ras_of_ijk(venous, (i, j, k)), itk_ras, atol=1e-3)
    np.testing.assert_array_equal(arrayFromVolume(venous), sitk.GetArrayFromImage(image))

    # Every tumor voxel of the segment is a tumor voxel of the label map at the same RAS position.
    tumor_id = loaded.segmentation.GetSegmentation().GetSegmentIdBySegmentName("tumor")
    mask, index_to_world = segment_mask(loaded.segmentation, tumor_id)
    segment_voxels = np.argwhere(mask)[:, ::-1]  # (i, j, k) within the segment's extent
    segment_ras = (index_to_world @ np.c_[segment_voxels, np.ones(len(segment_voxels))].T).T[:, :3]
    label_voxels = np.argwhere(labelmap == 2)[:, ::-1]
    label_ras = (ijk_to_ras_matrix(venous) @ np.c_[label_voxels, np.ones(len(label_voxels))].T).T[:, :3]
    assert len(segment_ras) == len(label_ras) > 100

    def sort_rows(points: np.ndarray) -> np.ndarray:
        return points[np.lexsort(np.round(points, 3).T)]

    np.testing.assert_allclose(sort_rows(segment_ras), sort_rows(label_ras), atol=1e-3)
    np.testing.assert_allclose(segment_ras.mean(axis=0), fake_result["tumor_center_ras"], atol=1.0)


def test_overlays_share_the_inputs_grid_and_values(slicer_context, fake_result) -> None:
    loaded = load_result(slicer_context.scene, fake_result["result_dir"])
    venous = loaded.input_volumes["venous"]
    outputs = loaded.result["outputs"]
    files = {
        "probability:tumor": outputs["probabilities"]["tumor"],
        "attention:arterial": outputs["attention"]["arterial"],
        "level_set:tumor": outputs["level_set"]["tumor"],
        "uncertainty": outputs["uncertainty"],
    }
    for key, file_name in files.items():
        overlay = loaded.overlays[key]
        np.testing.assert_array_equal(ijk_to_ras_matrix(overlay), ijk_to_ras_matrix(venous))
        expected = sitk.GetArrayFromImage(sitk.ReadImage(str(fake_result["result_dir"] / file_name)))
        np.testing.assert_array_equal(arrayFromVolume(overlay), expected)
