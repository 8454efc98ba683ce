"""Tests of MultiModalSegLib.metrics: agreement with medpy.metric.binary, conventions, hand cases.

medpy is the reference the papers' tables were computed with; these tests run it on small
masks (fast) and compare every value to 1e-6. The speed comparison lives in
bench/bench_metrics.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from MultiModalSegLib import metrics
from MultiModalSegLib.errors import MultiModalSegError

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-6
# MedPy's private helper: distances from each surface voxel of the first mask to the second.
medpy_surface_distances = getattr(medpy_binary, "__surface_distances")


def blob_field(shape: tuple[int, ...], rng: np.random.Generator, sigma: float = 2.5) -> np.ndarray:
    """Smooth unit-variance random field; thresholding it gives blobby masks, some touching the border."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / field.std()


def mask_pair(kind: str, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, reference) masks of a given kind, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    field = blob_field(shape, rng)
    if kind == "perturbed":  # a prediction close to the reference: many shared surface voxels
        reference = field > 0.5
        prediction = (field + 0.3 * blob_field(shape, rng, sigma=1.5)) > 0.5
    elif kind == "independent":  # unrelated masks, large distances
        reference = field > 0.8
        prediction = blob_field(shape, rng) > 0.8
    elif kind == "speckle":  # isolated voxels: every voxel is surface
        reference = rng.random(shape) > 0.97
        prediction = rng.random(shape) > 0.97
    else:
        raise ValueError(kind)
    assert reference.any() and prediction.any()
    return prediction, reference


def assert_agrees_with_medpy(prediction: np.ndarray, reference: np.ndarray, spacing) -> None:
    expected = {
        "hd95": medpy_binary.hd95(prediction, reference, voxelspacing=spacing),
        "assd": medpy_binary.assd(prediction, reference, voxelspacing=spacing),
        "hd": medpy_binary.hd(prediction, reference, voxelspacing=spacing),
        "asd_pred_to_ref": medpy_binary.asd(prediction, reference, voxelspacing=spacing),
        "asd_ref_to_pred": medpy_binary.asd(reference, prediction, voxelspacing=spacing),
    }
    combined = metrics.surface_metrics(prediction, reference, spacing)
    assert set(combined) == set(expected)
    for name, value in expected.items():
        assert combined[name] == pytest.approx(value, abs=TOLERANCE, rel=0), name
    assert metrics.hd95(prediction, reference, spacing) == pytest.approx(expected["hd95"], abs=TOLERANCE, rel=0)
    assert metrics.assd(prediction, reference, spacing) == pytest.approx(expected["assd"], abs=TOLERANCE, rel=0)
    assert metrics.asd(prediction, reference, spacing) == pytest.approx(
        expected["asd_pred_to_ref"], abs=TOLERANCE, rel=0
    )
    assert metrics.dice(prediction, reference) == pytest.approx(medpy_binary.dc(prediction, reference), abs=1e-12)
    assert metrics.jaccard(prediction, reference) == pytest.approx(medpy_binary.jc(prediction, reference), abs=1e-12)

    # The directed distance arrays themselves, element by element, in MedPy's (C) order.
    pred_to_ref, ref_to_pred = metrics.surface_distances(prediction, reference, spacing)
    np.testing.assert_allclose(
        pred_to_ref, medpy_surface_distances(prediction, reference, spacing), rtol=0, atol=TOLERANCE
    )
    np.testing.assert_allclose(
        ref_to_pred, medpy_surface_distances(reference, prediction, spacing), rtol=0, atol=TOLERANCE
    )


@pytest.mark.parametrize("spacing", [None, (2.5, 0.8, 0.8), (0.7, 3.0, 1.3)], ids=["voxels", "ct", "odd"])
@pytest.mark.parametrize("kind", ["perturbed", "independent", "speckle"])
@pytest.mark.parametrize("seed", [0, 1])
def test_3d_masks_agree_with_medpy(kind: str, seed: int, spacing) -> None:
    prediction, reference = mask_pair(kind, (40, 48, 32), seed)
    assert_agrees_with_medpy(prediction, reference, spacing)


@pytest.mark.parametrize("spacing", [None, (0.5, 1.7)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_2d_masks_agree_with_medpy(seed: int, spacing) -> None:
    prediction, reference = mask_pair("perturbed", (64, 80), seed)
    assert_agrees_with_medpy(prediction, reference, spacing)


def test_masks_touching_the_volume_border_agree_with_medpy() -> None:
    """Erosion treats the outside as background, so border voxels are surface; the crop must keep that."""
    shape = (20, 24, 16)
    reference = np.zeros(shape, dtype=bool)
    reference[0:8, :, 3:16] = True  # touches z=0, both y borders and the last x border
    prediction = np.zeros(shape, dtype=bool)
    prediction[2:20, 5:24, 0:10] = True  # touches the last z, last y and first x border
    for spacing in (None, (2.5, 0.8, 0.8)):
        assert_agrees_with_medpy(prediction, reference, spacing)
    # A mask that fills the whole volume has the volume's outer shell as surface.
    full = np.ones(shape, dtype=bool)
    assert_agrees_with_medpy(full, reference, (2.5, 0.8, 0.8))


@pytest.mark.parametrize(
    "mask",
    [
        np.ones((6, 7, 5), dtype=bool),
        np.pad(np.ones((4, 5, 3), dtype=bool), 1),
        mask_pair("perturbed", (30, 26, 22), 3)[0],
        mask_pair("speckle", (30, 26, 22), 4)[0],
        mask_pair("perturbed", (50, 40), 5)[1],
    ],
    ids=["fills-volume", "one-voxel-margin", "blobs-on-border", "speckle", "2d"],
)
def test_surface_of_the_cropped_mask_equals_erosion_of_the_full_mask(mask: np.ndarray) -> None:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    expected = mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)
    np.testing.assert_array_equal(metrics.surface_mask(mask), expected)


def test_far_apart_masks_give_the_same_distances_as_medpy() -> None:
    """The joint bounding box then spans most of the volume, with empty space between the masks."""
    shape = (30, 40, 36)
    reference = np.zeros(shape, dtype=bool)
    reference[1:6, 2:9, 30:35] = True
    prediction = np.zeros(shape, dtype=bool)
    prediction[22:29, 31:39, 1:4] = True
    assert_agrees_with_medpy(prediction, reference, (1.5, 0.6, 0.9))


def test_parallel_planes_are_their_separation_apart() -> None:
    """Two one-voxel-thick planes 7 slices apart: every surface distance is exactly 7 slices."""
    shape = (20, 9, 11)
    reference = np.zeros(shape, dtype=bool)
    reference[12] = True
    prediction = np.zeros(shape, dtype=bool)
    prediction[5] = True
    in_voxels = metrics.surface_metrics(prediction, reference)
    for name in ("hd95", "assd", "hd", "asd_pred_to_ref", "asd_ref_to_pred"):
        assert in_voxels[name] == pytest.approx(7.0, abs=1e-12), name
    in_mm = metrics.surface_metrics(prediction, reference, spacing=(2.5, 0.8, 0.8))
    for name in ("hd95", "assd", "hd", "asd_pred_to_ref", "asd_ref_to_pred"):
        assert in_mm[name] == pytest.approx(7 * 2.5, abs=1e-12), name
    assert metrics.dice(prediction, reference) == 0.0
    assert metrics.jaccard(prediction, reference) == 0.0


def test_one_stray_voxel_outside_a_cube() -> None:
    """Cube of side 5 (5^3 - 3^3 = 98 surface voxels) plus one isolated voxel 6 slices beyond its face."""
    shape = (24, 12, 12)
    reference = np.zeros(shape, dtype=bool)
    reference[2:7, 3:8, 3:8] = True
    prediction = reference.copy()
    prediction[12, 5, 5] = True  # nearest reference surface voxel: (6, 5, 5), 6 slices away
    spacing = (2.0, 0.5, 0.5)
    distance = 6 * 2.0
    values = metrics.surface_metrics(prediction, reference, spacing)
    assert values["hd"] == pytest.approx(distance)
    assert values["asd_pred_to_ref"] == pytest.approx(distance / 99)
    assert values["asd_ref_to_pred"] == 0.0
    assert values["assd"] == pytest.approx(distance / (99 + 98))
    assert values["hd95"] == 0.0  # 196 of the 197 pooled distances are 0
    pred_to_ref, ref_to_pred = metrics.surface_distances(prediction, reference, spacing)
    assert (len(pred_to_ref), len(ref_to_pred)) == (99, 98)
    assert np.count_nonzero(pred_to_ref) == 1 and pred_to_ref.max() == pytest.approx(distance)
    assert metrics.dice(prediction, reference) == pytest.approx(2 * 125 / (126 + 125))
    assert metrics.jaccard(prediction, reference) == pytest.approx(125 / 126)


def test_identical_masks_have_zero_distance_and_full_overlap() -> None:
    mask = mask_pair("perturbed", (30, 32, 28), 7)[1]
    values = metrics.surface_metrics(mask, mask, (2.5, 0.8, 0.8))
    assert all(value == 0.0 for value in values.values())
    assert metrics.hd95(mask, mask) == 0.0 and metrics.assd(mask, mask) == 0.0
    assert metrics.dice(mask, mask) == 1.0 and metrics.jaccard(mask, mask) == 1.0


def test_symmetric_metrics_do_not_depend_on_argument_order() -> None:
    prediction, reference = mask_pair("independent", (36, 40, 30), 11)
    spacing = (2.5, 0.8, 0.8)
    for function in (metrics.dice, metrics.jaccard):
        assert function(prediction, reference) == function(reference, prediction)
    for function in (metrics.hd95, metrics.assd):
        assert function(prediction, reference, spacing) == pytest.approx(
            function(reference, prediction, spacing), abs=1e-12
        )
    forward = metrics.surface_metrics(prediction, reference, spacing)
    backward = metrics.surface_metrics(reference, prediction, spacing)
    assert forward["asd_pred_to_ref"] == pytest.approx(backward["asd_ref_to_pred"], abs=1e-12)
    assert forward["asd_pred_to_ref"] != pytest.approx(forward["asd_ref_to_pred"])  # asd is directed
    assert metrics.asd(prediction, reference, spacing) == pytest.approx(forward["asd_pred_to_ref"], abs=1e-12)


def test_empty_mask_conventions() -> None:
    shape = (10, 12, 8)
    empty = np.zeros(shape, dtype=bool)
    mask = np.zeros(shape, dtype=bool)
    mask[2:6, 3:9, 1:5] = True

    assert metrics.dice(empty, empty) == 1.0
    assert metrics.jaccard(empty, empty) == 1.0
    assert metrics.dice(mask, empty) == 0.0 and metrics.dice(empty, mask) == 0.0
    assert metrics.jaccard(mask, empty) == 0.0 and metrics.jaccard(empty, mask) == 0.0

    for prediction, reference in ((mask, empty), (empty, mask), (empty, empty)):
        assert math.isnan(metrics.hd95(prediction, reference))
        assert math.isnan(metrics.assd(prediction, reference, (2.0, 1.0, 1.0)))
        assert math.isnan(metrics.asd(prediction, reference))
        assert all(math.isnan(value) for value in metrics.surface_metrics(prediction, reference).values())
    with pytest.raises(RuntimeError):  # what we replace: medpy refuses empty masks
        medpy_binary.hd95(mask, empty)

    pred_to_ref, ref_to_pred = metrics.surface_distances(empty, mask)
    assert pred_to_ref.shape == (0,)
    assert len(ref_to_pred) == np.count_nonzero(metrics.surface_mask(mask)) and np.all(np.isinf(ref_to_pred))
    pred_to_ref, ref_to_pred = metrics.surface_distances(empty, empty)
    assert pred_to_ref.shape == (0,) and ref_to_pred.shape == (0,)


def test_integer_label_masks_count_nonzero_as_foreground() -> None:
    prediction, reference = mask_pair("perturbed", (24, 28, 20), 5)
    spacing = (2.5, 0.8, 0.8)
    labels_prediction = prediction.astype(np.uint8) * 2  # label value 2
    labels_reference = reference.astype(np.int16) * -1
    assert metrics.dice(labels_prediction, labels_reference) == metrics.dice(prediction, reference)
    assert metrics.jaccard(labels_prediction, labels_reference) == metrics.jaccard(prediction, reference)
    assert metrics.surface_metrics(labels_prediction, labels_reference, spacing) == metrics.surface_metrics(
        prediction, reference, spacing
    )


def test_scalar_spacing_means_the_same_spacing_on_every_axis() -> None:
    prediction, reference = mask_pair("independent", (24, 28, 20), 6)
    assert metrics.surface_metrics(prediction, reference, 1.5) == metrics.surface_metrics(
        prediction, reference, (1.5, 1.5, 1.5)
    )
    assert metrics.hd95(prediction, reference, 1.5) == pytest.approx(
        medpy_binary.hd95(prediction, reference, voxelspacing=1.5), abs=TOLERANCE
    )


def test_user_errors_raise_multimodalseg_error_with_advice() -> None:
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[2:5, 2:5, 2:5] = True
    with pytest.raises(MultiModalSegError, match="resample"):
        metrics.dice(mask, mask[:, :, :7])
    with pytest.raises(MultiModalSegError, match="shape"):
        metrics.hd95(mask, mask[:7])
    with pytest.raises(MultiModalSegError, match="threshold"):
        metrics.assd(mask.astype(np.float32), mask)
    with pytest.raises(MultiModalSegError, match="one spacing per array axis"):
        metrics.hd95(mask, mask, spacing=(1.0, 1.0))
    with pytest.raises(MultiModalSegError, match="positive"):
        metrics.surface_metrics(mask, mask, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(MultiModalSegError, match="scalar"):
        metrics.dice(np.bool_(True), np.bool_(True))


def test_metrics_module_does_not_import_torch() -> None:
    code = "import sys, MultiModalSegLib.metrics; sys.exit(1 if 'torch' in sys.modules else 0)"
    completed = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr or "MultiModalSegLib.metrics imported torch"
