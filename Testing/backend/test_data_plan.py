"""The data plan: nnU-Net's target spacing rule, training-set CT statistics, plan-space resampling, and
that a package's plan is what inference and fine-tuning use, unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MultiModalSegLib.data_plan import DataPlan, compute_plan, plan_target_spacing
from MultiModalSegLib.datasets import Case
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.plan_space import Grid, channels_to_grid, label_to_grid, network_grid


def image_from(array: np.ndarray, spacing_xyz, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(tuple(float(v) for v in spacing_xyz))
    image.SetOrigin(origin)
    return image


# --------------------------------------------------------------------------- target spacing


def test_target_spacing_is_the_median_per_axis():
    spacings = [(2.0, 0.8, 0.8), (3.0, 0.7, 0.7), (2.5, 0.9, 0.9)]  # z, y, x
    shapes = [(200, 512, 512)] * 3  # 200 slices: z is coarser, but not thin in voxels
    assert plan_target_spacing(spacings, shapes) == (2.5, 0.8, 0.8)
    # with 100 slices it is both (2.5 > 3 x 0.8 mm and 3 x 100 < 512 voxels): the 10th percentile of z
    assert plan_target_spacing(spacings, [(100, 512, 512)] * 3) == (2.1, 0.8, 0.8)


def test_thick_slices_with_few_voxels_take_the_tenth_percentile_along_that_axis():
    # nnU-Net's anisotropy rule: median z 5 mm > 3 x 0.8 mm, and 40 slices x 3 < 512 voxels in-plane
    z = [5.0] * 7 + [1.0, 1.25, 1.5]
    spacings = [(value, 0.8, 0.8) for value in z]
    shapes = [(40, 512, 512)] * 10
    target = plan_target_spacing(spacings, shapes)
    assert target[1:] == (0.8, 0.8)
    assert target[0] == pytest.approx(float(np.percentile(z, 10)))  # 1.225 mm, not the median 5 mm
    # many slices: not anisotropic in voxels, so the median stays
    assert plan_target_spacing(spacings, [(400, 512, 512)] * 10)[0] == 5.0
    # the 10th percentile is never finer than the in-plane spacing
    fine = [(5.0, 1.0, 1.0)] * 8 + [(0.5, 1.0, 1.0)] * 2
    assert plan_target_spacing(fine, [(30, 256, 256)] * 10)[0] == pytest.approx(1.0 + 1e-5)


def test_bad_spacings_are_refused_with_a_sentence():
    with pytest.raises(MultiModalSegError, match="spacing"):
        plan_target_spacing([(0.0, 1.0, 1.0)], [(10, 10, 10)])


# --------------------------------------------------------------------------- statistics


def synthetic_ct_case(index: int, spacing_xyz, organ_hu: float, noise: float) -> Case:
    rng = np.random.default_rng(index)
    shape = (20, 40, 40)
    array = np.full(shape, -1000.0, dtype=np.float32)
    array[2:18, 5:35, 5:35] = 40.0  # body
    label = np.zeros(shape, dtype=np.uint8)
    label[6:14, 12:28, 12:28] = 1
    organ = label == 1
    array[organ] = organ_hu + rng.normal(0.0, noise, size=int(organ.sum()))
    images = {"venous": image_from(array, spacing_xyz)}
    return Case(case_id=f"case{index}", images=images, label=image_from(label, spacing_xyz), source="synthetic")


def test_ct_statistics_are_the_training_sets_labelled_foreground():
    cases = [synthetic_ct_case(0, (0.8, 0.8, 2.5), 100.0, 10.0), synthetic_ct_case(1, (0.7, 0.7, 3.0), 140.0, 10.0),
             synthetic_ct_case(2, (0.9, 0.9, 2.0), 120.0, 10.0)]
    plan = compute_plan(cases, ["venous"], {"venous": "ct"}, "venous", (16, 32, 32))
    assert plan.target_spacing == (2.5, 0.8, 0.8)
    settings = plan.settings("venous")
    # pooled foreground: three equal-sized groups around 100, 140, 120 HU with sd 10: mean 120, sd ~ sqrt(800/3 + 100)
    assert settings["mean"] == pytest.approx(120.0, abs=0.5)
    assert settings["std"] == pytest.approx(np.sqrt(800.0 / 3.0 + 100.0), rel=0.03)
    assert settings["clip"][0] < 100.0 - 15.0 and settings["clip"][1] > 140.0 + 15.0
    assert plan.scheme("venous") == "ct"
    # the body (40 HU) and the air (-1000 HU) are not foreground: they do not move the statistics
    assert plan.fingerprint["intensity"]["venous"]["foreground_voxels_sampled"] == 3 * 8 * 16 * 16


def test_mr_modalities_keep_per_image_normalisation():
    case = synthetic_ct_case(0, (1.0, 1.0, 1.0), 100.0, 5.0)
    plan = compute_plan([case], ["venous"], {"venous": "mr"}, "venous", (8, 16, 16))
    assert plan.normalization == {"venous": {"scheme": "mr"}}


def test_the_plan_round_trips_through_json():
    plan = DataPlan(target_spacing=(5.0, 2.8, 2.8), normalization={"a": {"scheme": "ct", "clip": [-50, 200],
                                                                          "mean": 90.0, "std": 40.0}},
                    patch_size=(32, 64, 64), postprocessing={"largest_component": ["liver"]}, mirror_axes=(0, 1, 2))
    again = DataPlan.from_dict(plan.to_dict())
    assert again == plan
    assert again.target_spacing_xyz == (2.8, 2.8, 5.0)
    with pytest.raises(MultiModalSegError, match="target_spacing"):
        DataPlan.from_dict({"normalization": {}})


# --------------------------------------------------------------------------- resampling


def sphere_label(shape, spacing_zyx, radius_mm, value=1):
    grid = np.indices(shape).astype(np.float64)
    centre = [(s - 1) / 2 for s in shape]
    distance = np.sqrt(sum(((grid[a] - centre[a]) * spacing_zyx[a]) ** 2 for a in range(3)))
    return np.where(distance <= radius_mm, value, 0).astype(np.uint8)


def test_a_label_resampled_to_the_target_spacing_and_back_keeps_its_volume():
    # a liver-sized 45 mm sphere around a 15 mm lesion, moved from a clinical CT grid to the liver plan's and back
    spacing_zyx = (2.5, 0.8, 0.8)
    label = sphere_label((48, 160, 160), spacing_zyx, 45.0)
    label[sphere_label((48, 160, 160), spacing_zyx, 15.0) == 1] = 2
    source = Grid.of(image_from(label, tuple(reversed(spacing_zyx))))
    target = network_grid(source, (2.8, 2.8, 5.0))
    assert target.shape == (24, 46, 46)
    coarse = label_to_grid(label, source, target)
    back = label_to_grid(coarse, target, source)
    voxel = np.prod(spacing_zyx)
    for value, tolerance in ((1, 0.02), (2, 0.05)):
        original = (label == value).sum() * voxel
        assert (coarse == value).sum() * 5.0 * 2.8 * 2.8 == pytest.approx(original, rel=tolerance)
        assert (back == value).sum() * voxel == pytest.approx(original, rel=tolerance)
    assert set(np.unique(back)) == {0, 1, 2}


def test_the_network_grid_keeps_the_physical_extent_and_direction():
    image = image_from(np.zeros((10, 30, 40), np.float32), (1.0, 1.0, 3.0), origin=(5.0, -7.0, 11.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    source = Grid.of(image)
    target = network_grid(source, (2.0, 2.0, 3.0))
    assert target.size == (20, 15, 10) and target.direction == source.direction
    # the outer edge of voxel 0 stays put: origin moves half a voxel difference along the direction's columns
    np.testing.assert_allclose(target.origin, (5.0 + 0.5, -7.0 - 0.5, 11.0), atol=1e-9)
    assert network_grid(source, (1.0, 1.0, 3.0)) == source  # already at the target: no resampling
    maps = np.random.default_rng(0).random((2, 10, 30, 40)).astype(np.float32)
    assert channels_to_grid(maps, source, source).dtype == np.float16


# --------------------------------------------------------------------------- packages


def packaged_tiny_maml(folder, plan: DataPlan | None):
    from tiny_packages import make_tiny_maml, tiny_maml_manifest

    from MultiModalSegLib.weights import save_model_package

    manifest = tiny_maml_manifest()
    if plan is not None:
        manifest["plan"] = plan.to_dict()
    return save_model_package(make_tiny_maml(), manifest, folder)


LIVER_PLAN = DataPlan(target_spacing=(4.0, 2.0, 2.0),
                      normalization={"arterial": {"scheme": "ct", "clip": [-100.0, 250.0], "mean": 80.0, "std": 50.0},
                                     "venous": {"scheme": "ct", "clip": [-100.0, 250.0], "mean": 100.0, "std": 40.0}},
                      patch_size=(8, 16, 16), postprocessing={"largest_component": ["liver"]})


def ct_volume(shape_zyx, spacing_xyz, seed=0):
    rng = np.random.default_rng(seed)
    array = rng.normal(90.0, 60.0, size=shape_zyx).astype(np.float32)
    array[:, :2] = -1000.0
    return image_from(array, spacing_xyz, origin=(-20.0, 10.0, 50.0))


def test_inference_normalises_with_the_plans_numbers_and_works_at_its_spacing(tmp_path):
    from MultiModalSegLib.inference import predict, prepare_input_volume

    package = packaged_tiny_maml(tmp_path / "planned", LIVER_PLAN)
    venous = ct_volume((12, 40, 36), (1.0, 1.0, 2.0), seed=1)
    arterial = ct_volume((12, 40, 36), (1.0, 1.0, 2.0), seed=2)
    prepared = prepare_input_volume(package, {"arterial": arterial, "venous": venous}, ["arterial", "venous"])
    # 12 x 40 x 36 voxels of 2 x 1 x 1 mm -> 6 x 20 x 18 of 4 x 2 x 2 mm
    assert prepared.network_grid.shape == (6, 20, 18) and prepared.volume.shape == (2, 6, 20, 18)
    # the values are the plan's: clip to [-100, 250], then (x - 100) / 40 for the venous phase
    expected = (np.clip(sitk.GetArrayFromImage(venous), -100.0, 250.0) - 100.0) / 40.0
    back = channels_to_grid(prepared.volume[1:], prepared.network_grid, prepared.reference_grid, np.float32)[0]
    interior = (slice(2, -2), slice(4, -4), slice(4, -4))
    assert abs(float(back[interior].mean()) - float(expected[interior].mean())) < 0.05
    assert prepared.volume[1].min() >= (-100.0 - 100.0) / 40.0 - 1e-6
    assert prepared.volume[1].max() <= (250.0 - 100.0) / 40.0 + 1e-6

    result = predict(package, {"arterial": arterial, "venous": venous}, device="cpu")
    assert result.labelmap.shape == (12, 40, 36)  # back on the venous grid
    assert result.grids["resampled"] and result.grids["network"]["size_xyz"] == [18, 20, 6]
    assert result.postprocessing == {"largest_component": ["liver"], "source": "plan"}
    assert not any("no data plan" in w for w in result.warnings)


def test_a_package_without_a_plan_still_predicts_on_the_input_grid_with_a_warning(tmp_path):
    from MultiModalSegLib.inference import predict

    package = packaged_tiny_maml(tmp_path / "v1", None)
    venous = ct_volume((12, 40, 36), (1.0, 1.0, 2.0), seed=1)
    result = predict(package, {"venous": venous}, device="cpu")
    assert result.labelmap.shape == (12, 40, 36)
    assert not result.grids["resampled"] and not result.grids["plan"]
    assert any("no data plan" in w and "input grid" in w for w in result.warnings)


def test_grid_warnings_for_a_far_spacing_a_tiny_volume_and_poor_overlap(tmp_path):
    from MultiModalSegLib.inference import predict

    package = packaged_tiny_maml(tmp_path / "planned", LIVER_PLAN)
    fine = ct_volume((40, 160, 160), (0.25, 0.25, 0.5), seed=3)  # 8x finer than the plan in-plane
    result = predict(package, {"venous": fine}, device="cpu")
    assert any("8.0x along x" in w for w in result.warnings)
    small = ct_volume((4, 10, 10), (2.0, 2.0, 4.0), seed=4)
    assert any("smaller than one patch" in w for w in predict(package, {"venous": small}, device="cpu").warnings)
    venous = ct_volume((12, 40, 36), (2.0, 2.0, 4.0), seed=5)
    shifted = ct_volume((12, 40, 36), (2.0, 2.0, 4.0), seed=6)
    shifted.SetOrigin((-20.0 + 0.3 * 36 * 2.0, 10.0, 50.0))  # 30 % of the width to the side
    warnings = predict(package, {"venous": venous, "arterial": shifted}, device="cpu").warnings
    assert any("overlap by only 70 %" in w for w in warnings)


def test_fine_tuning_keeps_the_starting_packages_plan(tmp_path, monkeypatch):
    from MultiModalSegLib.datasets import write_cases_json
    from MultiModalSegLib.training.config import FinetuneConfig
    from MultiModalSegLib.training.finetune import finetune

    package = packaged_tiny_maml(tmp_path / "planned", LIVER_PLAN)
    case = synthetic_ct_case(0, (1.0, 1.0, 2.0), 120.0, 10.0)
    case = Case(case_id="c0", images={"arterial": case.images["venous"], "venous": case.images["venous"]},
                label=case.label, source="synthetic")
    labeled = tmp_path / "labeled.json"
    write_cases_json([case], labeled, image_folder=tmp_path / "images")
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))
    outcome = finetune(package.folder, str(labeled), None, tmp_path / "ft",
                       FinetuneConfig(iterations=2, device="cpu"))
    from MultiModalSegLib.weights import load_model_package

    new = load_model_package(outcome.folder)
    assert new.manifest["plan"] == package.manifest["plan"]
    assert new.version == 2
