"""levelset.signed_distance_map / inner_boundary / heaviside against DTC's recipe.

The reference here is DTC's ``compute_sdf`` written out with scipy and skimage (two
``distance_transform_edt`` calls, min-max normalisation, ``find_boundaries(mode="inner")``
set to 0), with ``sampling=spacing`` for the anisotropic variant.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.levelset import heaviside, inner_boundary, signed_distance_map

REPO_ROOT = Path(__file__).resolve().parents[2]


def reference_sdf(masks: np.ndarray, spacing=None) -> np.ndarray:
    """DTC compute_sdf (float64); full masks, which give NaN there, are left at 0 here."""
    result = np.zeros(masks.shape)
    for index in range(masks.shape[0]):
        foreground = masks[index].astype(bool)
        if not foreground.any() or foreground.all():
            continue
        inside = ndimage.distance_transform_edt(foreground, sampling=spacing)
        outside = ndimage.distance_transform_edt(~foreground, sampling=spacing)
        sample = (outside - outside.min()) / (outside.max() - outside.min()) - (inside - inside.min()) / (
            inside.max() - inside.min()
        )
        sample[find_boundaries(foreground, mode="inner")] = 0
        result[index] = sample
    return result


def random_blobs(rng: np.random.Generator, shape: tuple[int, ...], count: int = 3) -> np.ndarray:
    """Thresholded smoothed noise: several blobs, many touching the array border."""
    masks = np.empty((count, *shape), dtype=bool)
    for index in range(count):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 3.0))
        masks[index] = field > np.quantile(field, 1.0 - rng.uniform(0.1, 0.6))
    return masks


@pytest.mark.parametrize("shape", [(40, 36, 28), (17, 23, 9), (48, 40), (64,), (1, 20, 20), (12, 1, 15)])
def test_matches_reference_recipe_isotropic(shape):
    rng = np.random.default_rng(sum(shape))
    masks = random_blobs(rng, shape)
    ours = signed_distance_map(masks)
    assert ours.dtype == np.float32 and ours.shape == masks.shape
    assert np.abs(ours - reference_sdf(masks)).max() <= 1e-5


@pytest.mark.parametrize("spacing", [(2.5, 0.8, 0.8), (1.0, 1.0, 3.0), (0.7, 1.3, 1.0)])
def test_matches_reference_recipe_anisotropic(spacing):
    rng = np.random.default_rng(7)
    masks = random_blobs(rng, (30, 34, 26))
    ours = signed_distance_map(masks, spacing=spacing)
    assert np.abs(ours - reference_sdf(masks, spacing=spacing)).max() <= 1e-5
    # spacing is in array order: reversing it must change the result on these shapes
    assert np.abs(ours - signed_distance_map(masks, spacing=spacing[::-1])).max() > 1e-3


def test_anisotropic_2d_matches_reference():
    masks = random_blobs(np.random.default_rng(3), (50, 40))
    assert np.abs(signed_distance_map(masks, (3.0, 0.5)) - reference_sdf(masks, (3.0, 0.5))).max() <= 1e-5


def test_empty_and_full_masks_give_zeros_without_touching_neighbours():
    rng = np.random.default_rng(11)
    masks = np.zeros((3, 20, 22, 18), dtype=bool)
    masks[1] = random_blobs(rng, (20, 22, 18), count=1)[0]
    masks[2] = True
    ours = signed_distance_map(masks)
    assert not np.any(ours[0]) and not np.any(ours[2])
    assert np.abs(ours[1] - reference_sdf(masks[1:2])[0]).max() <= 1e-5


def test_sign_range_and_boundary_convention():
    mask = np.zeros((21, 21, 21), dtype=bool)
    mask[5:16, 5:16, 5:16] = True  # an 11^3 cube, centre voxel 6 voxels from the background
    sdf = signed_distance_map(mask[None])[0]
    boundary = find_boundaries(mask, mode="inner")
    interior = mask & ~boundary
    assert np.all(sdf[boundary] == 0)
    assert np.all(sdf[interior] < 0) and np.all(sdf[~mask] > 0)
    assert sdf[10, 10, 10] == pytest.approx(-1.0)  # deepest inside voxel
    assert sdf.min() == pytest.approx(-1.0) and sdf.max() == pytest.approx(1.0)
    corner_distance = np.sqrt(3 * 5**2)  # voxel (0,0,0) to the cube corner (5,5,5)
    assert sdf[0, 0, 0] == pytest.approx(1.0)  # the farthest outside voxel
    # one voxel outside a face: distance 1 out of the farthest sqrt(75)
    assert sdf[4, 10, 10] == pytest.approx(1.0 / corner_distance, rel=1e-6)


def test_blob_touching_the_border_measures_only_inside_the_array():
    mask = np.zeros((1, 12, 10, 8), dtype=bool)
    mask[0, :5] = True  # a slab on the low border of axis 0
    sdf = signed_distance_map(mask)[0]
    assert np.abs(sdf - reference_sdf(mask)[0]).max() <= 1e-5
    # the border plane is not a boundary and lies 5 voxels from the background, the deepest
    assert np.all(sdf[0] == pytest.approx(-1.0))
    assert np.all(sdf[4] == 0)  # the face towards the background is the boundary
    assert np.all(sdf[11] == pytest.approx(1.0))


def test_inner_boundary_equals_skimage_find_boundaries():
    rng = np.random.default_rng(5)
    for shape in [(31,), (1, 9), (25, 30), (14, 12, 10), (1, 8, 9), (7, 1, 1)]:
        for mask in random_blobs(rng, shape, count=4):
            np.testing.assert_array_equal(inner_boundary(mask), find_boundaries(mask, mode="inner"))
    full = np.ones((6, 7, 5), dtype=bool)
    np.testing.assert_array_equal(inner_boundary(full), find_boundaries(full, mode="inner"))


def test_non_boolean_masks_are_read_as_nonzero_foreground():
    masks = random_blobs(np.random.default_rng(2), (16, 18, 14), count=2)
    labels = masks.astype(np.int16) * 3
    np.testing.assert_array_equal(signed_distance_map(labels), signed_distance_map(masks))


def test_torch_in_torch_out():
    masks = random_blobs(np.random.default_rng(9), (20, 24, 16), count=2)
    tensor = torch.from_numpy(masks)
    result = signed_distance_map(tensor)
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.float32 and result.device == tensor.device
    np.testing.assert_array_equal(result.numpy(), signed_distance_map(masks))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_comes_back_on_its_device():
    masks = random_blobs(np.random.default_rng(9), (20, 24, 16), count=2)
    result = signed_distance_map(torch.from_numpy(masks).cuda())
    assert result.is_cuda
    assert np.abs(result.cpu().numpy() - reference_sdf(masks)).max() <= 1e-5


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [((30, 34, 26), None), ((17, 23, 9), (2.5, 0.8, 0.8)), ((48, 40), (3.0, 0.5)), ((64,), None), ((1, 20, 20), None)],
)
def test_gpu_algorithm_matches_reference_on_the_cpu(shape, spacing):
    """The min-plus path CUDA tensors take, run on CPU tensors: the reference's values."""
    from MultiModalSegLib.levelset import _signed_distance_map_torch

    masks = random_blobs(np.random.default_rng(len(shape) + shape[0]), shape)
    masks[0] = False  # an empty mask stays all zeros
    result = _signed_distance_map_torch(torch, torch.from_numpy(masks), spacing)
    assert result.dtype == torch.float32 and result.shape == masks.shape
    assert np.abs(result.numpy() - reference_sdf(masks, spacing)).max() <= 1e-5
    assert not result[0].any()


def test_gpu_algorithm_chunks_long_lines(monkeypatch):
    """Chunked min-plus passes (tiny chunks forced) give the same map as one block."""
    from MultiModalSegLib import levelset

    masks = torch.from_numpy(random_blobs(np.random.default_rng(5), (12, 20, 18), count=2))
    whole = levelset._signed_distance_map_torch(torch, masks, None)
    monkeypatch.setattr(levelset, "_MIN_PLUS_CHUNK_ELEMENTS", 7)
    np.testing.assert_array_equal(levelset._signed_distance_map_torch(torch, masks, None).numpy(), whole.numpy())


def test_bad_spacing_is_a_user_error():
    masks = np.zeros((1, 5, 5, 5), dtype=bool)
    masks[0, 2, 2, 2] = True
    with pytest.raises(MultiModalSegError, match="spacing"):
        signed_distance_map(masks, spacing=(1.0, 1.0))
    with pytest.raises(MultiModalSegError, match="positive"):
        signed_distance_map(masks, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        signed_distance_map(np.zeros((2, 3, 4, 5, 6), dtype=bool))


def test_heaviside_is_one_inside_and_zero_outside():
    z = np.array([-0.5, -0.01, 0.0, 0.01, 0.5], dtype=np.float32)
    values = heaviside(z)
    assert values.dtype == np.float32
    assert values[0] == 1.0 and values[1] > 0.999999  # inside (negative level set) -> 1
    assert values[2] == 0.5
    assert values[3] < 1e-6 and values[4] == 0.0  # outside -> 0
    assert np.all(np.diff(values) <= 0)
    np.testing.assert_allclose(heaviside(z, k=2.0), 1.0 / (1.0 + np.exp(2.0 * z)), rtol=1e-6)


def test_heaviside_on_torch_matches_reference_expression_and_has_gradient():
    z = torch.linspace(-0.02, 0.02, 41, requires_grad=True)
    values = heaviside(z)
    torch.testing.assert_close(values, torch.sigmoid(-1500 * z))  # DTC: sigmoid(-1500 * outputs_tanh)
    values.sum().backward()
    assert torch.all(z.grad <= 0) and z.grad[20] == pytest.approx(-1500 / 4)
    sdf = torch.from_numpy(signed_distance_map(random_blobs(np.random.default_rng(1), (12, 12, 12), 1)))
    mask = sdf < 0
    assert torch.all(heaviside(sdf[mask]) > 0.5) and torch.all(heaviside(sdf[sdf > 0]) < 0.5)


def test_module_does_not_import_torch():
    code = "import sys, MultiModalSegLib.levelset; assert 'torch' not in sys.modules, 'torch imported'"
    completed = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
