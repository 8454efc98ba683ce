"""Tests of MultiModalSegLib.preprocessing (grids) and intensity normalisation.

Alignment is checked against an analytic intensity: every test image samples the same
affine function of the physical (LPS) position, which trilinear interpolation reproduces
exactly, so a correctly resampled modality must equal that function at the reference's
voxel centres whatever the second image's obliquity and spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.preprocessing import (
    MINIMUM_OVERLAP_FRACTION,
    NormalizationSettings,
    align_to_reference,
    grid_differences,
    normalize_intensity,
    overlap_fraction,
    physical_bounding_box,
    resample_like,
    resample_to_spacing,
    restore_to_reference,
)

GRADIENT = np.array([0.8, -0.5, 1.3])  # intensity per millimetre along L, P, S
OFFSET = 200.0


def rotation(angles: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def voxel_centres(image: sitk.Image) -> np.ndarray:
    """Physical position of every voxel centre, shape (z, y, x, 3)."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in reversed(size)), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float)  # (x, y, z) index order
    direction = np.reshape(image.GetDirection(), (3, 3))
    return np.asarray(image.GetOrigin()) + (index * np.asarray(image.GetSpacing())) @ direction.T


def affine_image(size: tuple[int, int, int], spacing: tuple[float, float, float], origin: tuple[float, float, float],
                 direction: np.ndarray | None = None, dtype: type = np.float32) -> sitk.Image:
    """An image whose voxels hold OFFSET + GRADIENT . position, with the given geometry."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    values = (OFFSET + voxel_centres(image) @ GRADIENT).astype(dtype)
    result = sitk.GetImageFromArray(values)
    result.CopyInformation(image)
    return result


def reference_image() -> sitk.Image:
    return affine_image((40, 36, 16), (1.0, 1.0, 2.0), (-20.0, -18.0, -16.0))


# ------------------------------------------------------------------ geometry helpers

def test_grid_differences_names_what_differs() -> None:
    reference = reference_image()
    assert grid_differences(reference, reference) == []
    moved = sitk.Image(reference)
    moved.SetOrigin((-19.0, -18.0, -16.0))
    assert grid_differences(moved, reference) == ["origin"]
    tilted = sitk.Image(reference)
    tilted.SetDirection(tuple(rotation((0, 0, 0.1)).ravel()))
    assert grid_differences(tilted, reference) == ["direction"]
    finer = affine_image((40, 36, 16), (1.0, 1.0, 1.5), (-20.0, -18.0, -16.0))
    assert grid_differences(finer, reference) == ["spacing"]


def test_overlap_fraction_of_shifted_boxes() -> None:
    reference = reference_image()  # 40 x 36 x 32 mm box
    half = affine_image((40, 36, 16), (1.0, 1.0, 2.0), (0.0, -18.0, -16.0))  # shifted 20 mm along x
    assert overlap_fraction(half, reference) == pytest.approx(0.5)
    low, high = physical_bounding_box(reference)
    np.testing.assert_allclose(high - low, [40.0, 36.0, 32.0])


# ------------------------------------------------------------------ align_to_reference

def test_oblique_anisotropic_modality_is_resampled_onto_the_reference_grid() -> None:
    reference = reference_image()
    oblique = affine_image((34, 30, 12), (1.3, 1.1, 3.1), (-22.0, -24.0, -20.0), rotation((0.15, -0.1, 0.3)))
    label_array = (sitk.GetArrayFromImage(oblique) > OFFSET).astype(np.uint8) * 2
    label = sitk.GetImageFromArray(label_array)
    label.CopyInformation(oblique)

    aligned, aligned_label, report = align_to_reference({"venous": reference, "arterial": oblique}, "venous", label)

    assert list(aligned) == ["venous", "arterial"]
    result = aligned["arterial"]
    assert result.GetPixelID() == sitk.sitkFloat32
    assert result.GetSize() == reference.GetSize()
    assert result.GetOrigin() == reference.GetOrigin() and result.GetSpacing() == reference.GetSpacing()
    assert result.GetDirection() == reference.GetDirection()

    # Reference voxel centres inside the oblique image's voxel-centre hull are interpolated;
    # trilinear interpolation reproduces the affine intensity there up to float32 rounding.
    centres = voxel_centres(reference)
    continuous = np.array([oblique.TransformPhysicalPointToContinuousIndex(tuple(p))
                           for p in centres.reshape(-1, 3)]).reshape(centres.shape)
    inside = np.all((continuous >= 0) & (continuous <= np.asarray(oblique.GetSize()) - 1), axis=-1)
    outside = np.any((continuous < -0.5) | (continuous > np.asarray(oblique.GetSize()) - 0.5), axis=-1)
    assert inside.sum() > 0.3 * inside.size and outside.sum() > 0  # both cases are exercised
    values = sitk.GetArrayFromImage(result)
    expected = OFFSET + centres @ GRADIENT
    np.testing.assert_allclose(values[inside], expected[inside], atol=1e-3)
    # Outside the oblique image: its minimum intensity, not an invented 0.
    assert np.all(values[outside] == sitk.GetArrayViewFromImage(oblique).min())

    entry = {e["name"]: e for e in report}
    assert entry["venous"]["resampled"] is False and entry["venous"]["overlap_fraction"] == 1.0
    assert entry["arterial"]["resampled"] is True
    assert set(entry["arterial"]["reasons"]) == {"size", "spacing", "origin", "direction"}
    assert "spacing" in entry["arterial"]["why"]
    assert MINIMUM_OVERLAP_FRACTION < entry["arterial"]["overlap_fraction"] <= 1.0

    # The label follows by nearest neighbour: same grid, same type, only its own values.
    assert aligned_label is not None and aligned_label.GetPixelID() == sitk.sitkUInt8
    assert aligned_label.GetSize() == reference.GetSize()
    label_values = sitk.GetArrayFromImage(aligned_label)
    assert set(np.unique(label_values)) == {0, 2}


def test_label_on_nearest_neighbour_matches_the_affine_threshold() -> None:
    """Away from the threshold surface, the resampled label agrees with the thresholded intensity."""
    reference = reference_image()
    oblique = affine_image((34, 30, 12), (1.3, 1.1, 3.1), (-22.0, -24.0, -20.0), rotation((0.15, -0.1, 0.3)))
    label = sitk.GetImageFromArray((sitk.GetArrayFromImage(oblique) > OFFSET).astype(np.uint8))
    label.CopyInformation(oblique)
    aligned, aligned_label, _ = align_to_reference({"venous": reference, "arterial": oblique}, "venous", label)
    expected = OFFSET + voxel_centres(reference) @ GRADIENT
    aligned_values = sitk.GetArrayFromImage(aligned["arterial"])
    covered = aligned_values > sitk.GetArrayViewFromImage(oblique).min()
    # Nearest neighbour moves a point by at most half a voxel diagonal: |GRADIENT| * 1.9 mm < 3.5.
    far = covered & (np.abs(expected - OFFSET) > 3.5)
    labels = sitk.GetArrayFromImage(aligned_label)
    np.testing.assert_array_equal(labels[far], (expected[far] > OFFSET).astype(np.uint8))


def test_images_on_the_reference_grid_pass_through_untouched() -> None:
    reference = reference_image()
    rng = np.random.default_rng(1)
    same_grid_array = rng.integers(-1000, 1000, size=sitk.GetArrayViewFromImage(reference).shape).astype(np.int16)
    same_grid = sitk.GetImageFromArray(same_grid_array)
    same_grid.CopyInformation(reference)
    # Within tolerance: the origin as a float32 NIfTI header would store it.
    same_grid.SetOrigin(tuple(float(np.float32(v)) + 1e-5 for v in reference.GetOrigin()))
    original_origin = same_grid.GetOrigin()
    label = sitk.GetImageFromArray((same_grid_array > 0).astype(np.uint8))
    label.CopyInformation(reference)

    aligned, aligned_label, report = align_to_reference({"t1": same_grid, "t2": reference}, "t2", label)

    assert [e["resampled"] for e in report] == [False, False]
    assert report[0]["reasons"] == [] and report[0]["why"] == "already on the reference grid"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(aligned["t1"]), same_grid_array.astype(np.float32))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(aligned["t2"]), sitk.GetArrayFromImage(reference))
    assert aligned["t1"].GetPixelID() == sitk.sitkFloat32
    assert aligned["t1"].GetOrigin() == reference.GetOrigin()  # the reference's exact geometry
    assert same_grid.GetOrigin() == original_origin  # the caller's image is not modified
    np.testing.assert_array_equal(sitk.GetArrayFromImage(aligned_label), (same_grid_array > 0).astype(np.uint8))


def test_non_overlapping_modality_is_refused_with_a_sentence() -> None:
    reference = reference_image()
    elsewhere = affine_image((40, 36, 16), (1.0, 1.0, 2.0), (480.0, -18.0, -16.0))
    with pytest.raises(MultiModalSegError, match="modality 'flair' does not overlap .*'t1'.*same study"):
        align_to_reference({"t1": reference, "flair": elsewhere}, "t1")


def test_barely_overlapping_modality_is_refused() -> None:
    reference = reference_image()  # x from -20.5 to 19.5 mm
    sliver = affine_image((40, 36, 16), (1.0, 1.0, 2.0), (18.0, -18.0, -16.0))  # 2 mm of 40: 5 %
    assert overlap_fraction(sliver, reference) == pytest.approx(0.05)
    with pytest.raises(MultiModalSegError, match=r"'t2' covers only 5\.0 %.*same study"):
        align_to_reference({"t1": reference, "t2": sliver}, "t1")
    half = affine_image((40, 36, 16), (1.0, 1.0, 2.0), (0.0, -18.0, -16.0))
    _, _, report = align_to_reference({"t1": reference, "t2": half}, "t1")
    assert report[1]["overlap_fraction"] == pytest.approx(0.5) and report[1]["reasons"] == ["origin"]


def test_non_overlapping_label_is_refused() -> None:
    reference = reference_image()
    label = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    label.SetOrigin((900.0, 0.0, 0.0))
    with pytest.raises(MultiModalSegError, match="label does not overlap"):
        align_to_reference({"t1": reference}, "t1", label)


def test_unknown_reference_modality_is_refused() -> None:
    with pytest.raises(MultiModalSegError, match="'venous' is not among the images \\(arterial\\)"):
        align_to_reference({"arterial": reference_image()}, "venous")


# ------------------------------------------------------------------ resampling and restoring

def test_resample_like_nearest_keeps_labels_and_type() -> None:
    reference = reference_image()
    labels = sitk.GetImageFromArray(np.random.default_rng(2).integers(0, 4, size=(8, 9, 10)).astype(np.uint16))
    labels.SetSpacing((3.0, 3.0, 3.0))
    labels.SetOrigin((-15.0, -15.0, -12.0))
    resampled = resample_like(labels, reference, "nearest", default_value=0)
    assert resampled.GetPixelID() == sitk.sitkUInt16
    assert set(np.unique(sitk.GetArrayViewFromImage(resampled))) <= {0, 1, 2, 3}
    linear = resample_like(labels, reference)
    assert linear.GetPixelID() == sitk.sitkFloat32
    with pytest.raises(MultiModalSegError, match="Unknown interpolator 'cubic'"):
        resample_like(labels, reference, "cubic")


def test_resample_to_spacing_uses_xyz_order_and_keeps_the_extent() -> None:
    image = affine_image((40, 30, 10), (1.0, 1.0, 3.0), (5.0, -7.0, 11.0), rotation((0.1, 0.2, -0.3)))
    resampled = resample_to_spacing(image, (2.0, 1.0, 1.5))  # (x, y, z)
    assert resampled.GetSize() == (20, 30, 20)
    assert resampled.GetSpacing() == (2.0, 1.0, 1.5)
    assert resampled.GetDirection() == image.GetDirection()
    for a, b in zip(physical_bounding_box(resampled), physical_bounding_box(image)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # Interior voxels keep the affine intensity exactly (linear interpolation of an affine field).
    values = sitk.GetArrayFromImage(resampled)
    expected = OFFSET + voxel_centres(resampled) @ GRADIENT
    np.testing.assert_allclose(values[2:-2, 2:-2, 2:-2], expected[2:-2, 2:-2, 2:-2], atol=1e-3)
    with pytest.raises(MultiModalSegError, match="positive numbers in \\(x, y, z\\) order"):
        resample_to_spacing(image, (1.0, 0.0, 1.0))
    with pytest.raises(MultiModalSegError, match="positive numbers"):
        resample_to_spacing(image, (1.0, 1.0))


def test_restore_to_reference_copies_geometry_exactly() -> None:
    reference = affine_image((12, 10, 8), (0.77, 0.91, 2.3), (-101.123456789, 55.5, 3.25), rotation((0.3, 0.1, 0.7)))
    array = np.random.default_rng(4).random((8, 10, 12)).astype(np.float32)
    restored = restore_to_reference(array, reference)
    assert restored.GetOrigin() == reference.GetOrigin()
    assert restored.GetSpacing() == reference.GetSpacing()
    assert restored.GetDirection() == reference.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(restored), array)
    mask = restore_to_reference(array > 0.5, reference)
    assert mask.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), (array > 0.5).astype(np.uint8))
    assert restore_to_reference(array.astype(np.float16), reference).GetPixelID() == sitk.sitkFloat32
    with pytest.raises(ValueError, match="does not match the reference grid"):
        restore_to_reference(array.transpose(2, 1, 0), reference)


# ------------------------------------------------------------------ intensity normalisation

def ct_volume(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Air (-1000 HU) around a body of soft tissue with a few bright outliers (contrast, bone)."""
    rng = np.random.default_rng(seed)
    volume = np.full((20, 40, 40), -1000.0) + rng.normal(0, 5, size=(20, 40, 40))
    body = np.zeros(volume.shape, dtype=bool)
    body[2:18, 5:35, 5:35] = True
    volume[body] = rng.normal(60.0, 30.0, size=body.sum())
    volume[body & (rng.random(volume.shape) < 0.01)] = 1500.0
    return volume.astype(np.int16), body


def test_ct_clips_foreground_percentiles_then_z_scores_inside_the_mask() -> None:
    volume, body = ct_volume()
    volume.setflags(write=False)  # the input must not be modified (a SimpleITK array view is read-only)
    result = normalize_intensity(volume, "ct", mask=body)
    assert result.dtype == np.float32 and result.shape == volume.shape
    inside = result[body].astype(np.float64)
    assert inside.mean() == pytest.approx(0.0, abs=1e-5)
    assert inside.std() == pytest.approx(1.0, abs=1e-5)
    lower, upper = np.percentile(volume[body], [0.5, 99.5])
    clipped = np.clip(volume[body].astype(np.float64), lower, upper)
    mean, std = clipped.mean(), clipped.std()
    assert result.max() == pytest.approx((upper - mean) / std, abs=1e-5)
    assert result.min() == pytest.approx((lower - mean) / std, abs=1e-5)  # air clipped to the lower bound
    # The 1 % bright outliers are clipped: about 0.5 % of the body sits at the upper bound.
    assert 0.002 < np.mean(inside >= (upper - mean) / std - 1e-5) < 0.011


def test_ct_default_foreground_is_the_body_above_minus_500_hu() -> None:
    volume, body = ct_volume()
    assert volume[body].min() > -500 and volume[~body].max() < -500
    np.testing.assert_array_equal(normalize_intensity(volume, "ct"), normalize_intensity(volume, "ct", mask=body))


def test_ct_uses_training_set_statistics_when_the_package_has_them() -> None:
    volume, _ = ct_volume()
    settings = {"clip": [-100, 300], "mean": 80.0, "std": 40.0, "target_spacing": None}
    expected = (np.clip(volume.astype(np.float64), -100, 300) - 80.0) / 40.0
    np.testing.assert_allclose(normalize_intensity(volume, "ct", settings), expected, atol=1e-5)
    nnunet_names = {"percentile_00_5": -100, "percentile_99_5": 300, "mean": 80.0, "sd": 40.0}
    np.testing.assert_allclose(normalize_intensity(volume, "ct", nnunet_names), expected, atol=1e-5)


def test_ct_percentiles_come_from_the_manifest() -> None:
    volume, body = ct_volume()
    result = normalize_intensity(volume, "CT", {"ct_clip_percentiles": [5, 95], "target_spacing": [1, 1, 1]})
    lower, upper = np.percentile(volume[body], [5, 95])
    clipped = np.clip(volume[body].astype(np.float64), lower, upper)
    assert result.max() == pytest.approx((upper - clipped.mean()) / clipped.std(), abs=1e-5)


def test_mr_z_scores_the_nonzero_voxels_and_keeps_background_zero() -> None:
    rng = np.random.default_rng(6)
    volume = np.zeros((16, 24, 24), dtype=np.float32)
    brain = np.zeros(volume.shape, dtype=bool)
    brain[3:13, 4:20, 4:20] = True
    volume[brain] = rng.gamma(4.0, 150.0, size=brain.sum())
    result = normalize_intensity(volume, "mr")
    assert np.all(result[~brain] == 0)
    assert result[brain].astype(np.float64).mean() == pytest.approx(0.0, abs=1e-5)
    assert result[brain].astype(np.float64).std() == pytest.approx(1.0, abs=1e-5)
    # An explicit mask replaces the non-zero mask.
    half = brain.copy()
    half[:8] = False
    masked = normalize_intensity(volume, "mr", mask=half)
    assert np.all(masked[~half] == 0)
    assert masked[half].astype(np.float64).std() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("scheme", ["ct", "mr"])
@pytest.mark.parametrize("value", [0.0, 40.0, 0.1, -1000.0])
def test_constant_image_gives_zeros_not_nan(scheme: str, value: float) -> None:
    result = normalize_intensity(np.full((6, 7, 8), value, dtype=np.float32), scheme)
    assert np.all(np.isfinite(result)) and np.all(result == 0)


def test_none_returns_a_float32_copy() -> None:
    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    result = normalize_intensity(volume, "none")
    assert result.dtype == np.float32 and not np.shares_memory(result, volume)
    np.testing.assert_array_equal(result, volume)


def test_user_errors_in_normalisation() -> None:
    volume = np.ones((2, 3, 4))
    with pytest.raises(MultiModalSegError, match="Unknown intensity normalisation 'zscore'"):
        normalize_intensity(volume, "zscore")
    with pytest.raises(MultiModalSegError, match="mask has shape"):
        normalize_intensity(volume, "mr", mask=np.ones((4, 3, 2), dtype=bool))
    for bad in ({"clip": [300, -100]}, {"mean": 1.0}, {"mean": 0.0, "std": 0.0}, {"ct_clip_percentiles": [99, 1]},
                {"clip": "wide"}):
        with pytest.raises(MultiModalSegError, match="manifest.json"):
            NormalizationSettings.from_dict(bad)


def test_settings_round_trip_through_a_dict() -> None:
    defaults = NormalizationSettings()
    assert defaults.ct_clip_percentiles == (0.5, 99.5) and defaults.ct_body_threshold_hu == -500.0
    assert NormalizationSettings.from_dict(defaults.to_dict()) == defaults
    custom = NormalizationSettings.from_dict({"clip": [-50, 250], "mean": 10, "std": 3, "unrelated": 1})
    assert custom.clip == (-50.0, 250.0) and custom.mean == 10.0
    assert NormalizationSettings.from_dict(custom.to_dict()) == custom
