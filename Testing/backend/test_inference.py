"""predict(): geometry, outputs, missing modalities and bad inputs, on real images and networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tiny_packages import make_threshold_dtc, threshold_dtc_manifest

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.inference import keep_largest_component, predict, probabilities_to_labels

OBLIQUE = (0.9848077, -0.1736482, 0.0, 0.1736482, 0.9848077, 0.0, 0.0, 0.0, 1.0)  # 10 degrees about z


def ct_image(shape_zyx, seed, spacing=(1.5, 1.5, 4.0), origin=(-30.0, 20.0, 100.0), direction=OBLIQUE):
    rng = np.random.default_rng(seed)
    array = rng.normal(60, 25, size=shape_zyx).astype(np.float32)
    array[:, :3] = -1000
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def assert_same_geometry(image, reference, atol=0.0):
    """Exact in memory; NIfTI files store origin and direction in float32 (atol 1e-5 there)."""
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=atol)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=atol)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=atol)


def test_maml_outputs_are_on_the_reference_grid_and_well_formed(tiny_maml_package):
    venous = ct_image((11, 30, 26), 1)
    # The arterial phase is on another (shifted, finer) grid: it must be resampled onto the venous one.
    arterial = ct_image((14, 36, 30), 2, spacing=(1.2, 1.2, 3.0), origin=(-28.0, 22.0, 98.0))
    result = predict(tiny_maml_package, {"arterial": arterial, "venous": venous}, device="cpu")
    assert result.reference_modality == "venous"
    assert result.available == ["arterial", "venous"]
    assert_same_geometry(result.labelmap_image, venous)
    assert set(np.unique(result.labelmap)) <= {0, 1, 2}
    assert set(result.probabilities) == {"liver", "tumor"}
    assert set(result.attention) == {"arterial", "venous"}
    assert result.level_set == {}
    for array in [*result.probabilities.values(), *result.attention.values(), result.uncertainty]:
        assert array.shape == (11, 30, 26)
        assert np.isfinite(array).all()
        assert array.min() >= -1e-3 and array.max() <= 1 + 1e-3
    assert (result.probabilities["liver"].astype(np.float32) + result.probabilities["tumor"] <= 1 + 1e-2).all()
    resampled = [entry for entry in result.alignment if entry.get("resampled")]
    assert [entry["name"] for entry in resampled] == ["arterial"]
    assert result.timing["windows"] >= 1 and result.timing["device"] == "cpu"


def test_one_window_equals_the_bare_network_on_the_normalised_input(tiny_maml_package):
    """With a volume exactly one patch large, blending is the identity: the label map is the argmax."""
    from MultiModalSegLib.inference import prepare_input_volume

    images = {"arterial": ct_image((8, 16, 16), 3), "venous": ct_image((8, 16, 16), 4)}
    result = predict(tiny_maml_package, images, device="cpu")
    volume = prepare_input_volume(tiny_maml_package, images, ["arterial", "venous"]).volume
    network = tiny_maml_package.build_network()
    with torch.no_grad():
        joint = network(torch.from_numpy(volume)[None])["joint"][0]
    expected = joint.argmax(0).numpy()
    probabilities = torch.softmax(joint, 0).numpy()
    # Outputs are stored as float16: only near-ties (top two within 1e-2) may flip.
    top_two = np.sort(probabilities, axis=0)[-2:]
    decided = (top_two[1] - top_two[0]) > 1e-2
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(result.labelmap[decided], np.array([0, 1, 2])[expected][decided])
    np.testing.assert_allclose(result.probabilities["tumor"].astype(np.float32), probabilities[2], atol=2e-3)


@pytest.mark.parametrize("present", [["arterial"], ["venous"]])
def test_a_missing_phase_uses_the_present_branch_alone(tiny_maml_package, present):
    images = {name: ct_image((8, 20, 20), i) for i, name in enumerate(present)}
    result = predict(tiny_maml_package, images, device="cpu")
    assert result.available == present
    assert list(result.attention) == present
    # One modality: the joint output is that branch's, so branch and joint never disagree.
    np.testing.assert_allclose(result.uncertainty.astype(np.float32), 0.0, atol=1e-3)
    np.testing.assert_allclose(result.attention[present[0]].astype(np.float32), 1.0, atol=1e-3)


def test_dtc_gives_level_set_and_dual_task_uncertainty(tiny_dtc_package):
    from MultiModalSegLib.levelset import heaviside

    image = ct_image((16, 16, 16), 5, spacing=(1.0, 1.0, 1.0))
    result = predict(tiny_dtc_package, {"mri": image}, device="cpu")
    assert set(result.level_set) == {"atrium"} and result.attention == {}
    level_set = result.level_set["atrium"].astype(np.float32)
    assert level_set.min() >= -1 and level_set.max() <= 1
    probability = result.probabilities["atrium"].astype(np.float32)
    expected = np.abs(probability - heaviside(level_set))
    np.testing.assert_allclose(result.uncertainty.astype(np.float32), expected, atol=5e-3)
    np.testing.assert_array_equal(result.labelmap, (probability > 0.5).astype(np.uint8))


def test_write_saves_every_output_with_result_json(tiny_maml_package, tmp_path):
    images = {"arterial": ct_image((8, 20, 20), 6), "venous": ct_image((8, 20, 20), 7)}
    result = predict(tiny_maml_package, images, device="cpu")
    summary = result.write(tmp_path / "out", inputs={"arterial": "a.nii.gz", "venous": "v.nii.gz"})
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert on_disk == summary
    assert sorted(on_disk["files"]) == sorted(p.name for p in (tmp_path / "out").iterdir())
    labelmap = sitk.ReadImage(str(tmp_path / "out" / on_disk["outputs"]["labelmap"]))
    assert_same_geometry(labelmap, images["venous"], atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labelmap), result.labelmap)
    attention = sitk.ReadImage(str(tmp_path / "out" / on_disk["outputs"]["attention"]["arterial"]))
    assert attention.GetPixelID() == sitk.sitkFloat32
    assert on_disk["labels"][1]["name"] == "tumor" and on_disk["model"]["method"] == "maml"


def test_bad_inputs_are_refused_with_a_sentence(tiny_maml_package):
    good = ct_image((8, 16, 16), 8)
    with pytest.raises(MultiModalSegError, match="no modality named portal"):
        predict(tiny_maml_package, {"portal": good}, device="cpu")
    with pytest.raises(MultiModalSegError, match="No input image"):
        predict(tiny_maml_package, {}, device="cpu")
    strict = type(tiny_maml_package)(tiny_maml_package.folder,
                                     {**tiny_maml_package.manifest, "supports_missing_modalities": False})
    with pytest.raises(MultiModalSegError, match="needs every modality"):
        predict(strict, {"venous": good}, device="cpu")
    nan = sitk.GetArrayFromImage(good)
    nan[2, 3, 4] = np.nan
    nan_image = sitk.GetImageFromArray(nan)
    nan_image.CopyInformation(good)
    with pytest.raises(MultiModalSegError, match="venous"):
        predict(tiny_maml_package, {"venous": nan_image}, device="cpu")
    far = ct_image((8, 16, 16), 9, origin=(5000.0, 5000.0, 5000.0))
    with pytest.raises(MultiModalSegError, match="arterial"):
        predict(tiny_maml_package, {"venous": good, "arterial": far}, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="a CUDA GPU is present here; the refusal is for machines without one")
def test_cuda_without_a_gpu_is_refused_with_a_sentence(tiny_maml_package):
    with pytest.raises(MultiModalSegError, match="no CUDA GPU.*--device cpu"):
        predict(tiny_maml_package, {"venous": ct_image((8, 16, 16), 8)}, device="cuda")


def decided_voxels(result, method: str, margin: float = 0.05) -> np.ndarray:
    """Voxels whose label is not a near-tie: the top two softmax classes (MAML) or every sigmoid
    channel and 0.5 (DTC) at least ``margin`` apart."""
    maps = np.stack([p.astype(np.float32) for p in result.probabilities.values()])
    if method == "dtc":
        return (np.abs(maps - 0.5) > margin).all(axis=0)
    top_two = np.sort(np.concatenate([1 - maps.sum(axis=0, keepdims=True), maps]), axis=0)[-2:]
    return (top_two[1] - top_two[0]) > margin


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none is visible to PyTorch here)")
def test_cuda_prediction_with_amp_agrees_with_the_cpu(tiny_maml_package, tiny_dtc_package, tmp_path):
    """On a GPU: predict runs there (AMP), says so, and labels as the CPU does away from near-ties."""
    from MultiModalSegLib.weights import save_model_package

    threshold = save_model_package(make_threshold_dtc(), threshold_dtc_manifest(["mri"]), tmp_path / "threshold")
    cases = [(tiny_maml_package, {"arterial": ct_image((11, 30, 26), 1), "venous": ct_image((11, 30, 26), 2)}),
             (tiny_dtc_package, {"mri": ct_image((16, 20, 16), 5, spacing=(1.0, 1.0, 1.0))}),
             (threshold, {"mri": cube_image((20, 24, 18), (3, 4, 5), 6)})]
    for package, images in cases:
        on_cpu = predict(package, images, device="cpu")
        on_gpu = predict(package, images, device="cuda")
        assert on_gpu.timing["device"] == "cuda" and on_cpu.timing["device"] == "cpu"
        for name, probability in on_cpu.probabilities.items():
            difference = np.abs(probability.astype(np.float32) - on_gpu.probabilities[name].astype(np.float32))
            assert difference.max() < 2e-2, f"{package.id} {name}: fp16 and fp32 differ by {difference.max()}"
        decided = decided_voxels(on_cpu, package.method)
        np.testing.assert_array_equal(on_gpu.labelmap[decided], on_cpu.labelmap[decided])
    assert decided.all() and on_gpu.labelmap.sum() == 6**3  # the hand-set model: no near-ties at all
    assert torch.cuda.max_memory_allocated() > 0


def cube_image(shape_zyx, corner, side, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    """Zeros with a cube of ones (``side`` voxels from ``corner``, array order z, y, x)."""
    array = np.zeros(shape_zyx, dtype=np.float32)
    z, y, x = corner
    array[z:z + side, y:y + side, x:x + side] = 1.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def test_modalities_reach_their_own_channel_whatever_order_they_are_given_in(tmp_path):
    """The hand-set model labels what its first modality (t1) shows; t2 shows something else."""
    from MultiModalSegLib.weights import save_model_package

    package = save_model_package(make_threshold_dtc(in_channels=2, channel=0),
                                 threshold_dtc_manifest(["t1", "t2"]), tmp_path / "threshold")
    shape = (16, 24, 20)
    t1, t2 = cube_image(shape, (2, 3, 4), 5), cube_image(shape, (9, 14, 11), 4)
    expected = sitk.GetArrayFromImage(t1).astype(np.uint8)
    for images in ({"t1": t1, "t2": t2}, {"t2": t2, "t1": t1}):
        result = predict(package, images, device="cpu")
        assert result.available == ["t1", "t2"]
        np.testing.assert_array_equal(result.labelmap, expected, err_msg=f"inputs given as {list(images)}")


def test_probabilities_to_labels_for_both_methods():
    softmax = np.array([[0.6, 0.2], [0.3, 0.3], [0.1, 0.5]], dtype=np.float32)[:, :, None, None]
    np.testing.assert_array_equal(probabilities_to_labels(softmax, "maml")[:, 0, 0], [0, 2])
    sigmoid = np.array([[0.4, 0.7, 0.9], [0.45, 0.8, 0.2]], dtype=np.float32)[:, :, None, None]
    np.testing.assert_array_equal(probabilities_to_labels(sigmoid, "dtc")[:, 0, 0], [0, 2, 1])


def test_keep_largest_component_removes_small_islands_per_class():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[1:5, 1:5, 1:5] = 1
    labels[8, 8, 8] = 1
    labels[6:9, 1:3, 1:3] = 2
    kept = keep_largest_component(labels, 2)
    assert kept[8, 8, 8] == 0
    assert (kept[1:5, 1:5, 1:5] == 1).all() and (kept[6:9, 1:3, 1:3] == 2).all()
