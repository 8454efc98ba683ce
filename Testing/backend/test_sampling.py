"""Prepared cases, patch sampling, augmentation and two-stream batches (MultiModalSegLib.sampling)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MultiModalSegLib.datasets import Case
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.levelset import signed_distance_map
from MultiModalSegLib.sampling import (
    PatchSampler,
    PatchSamplingConfig,
    PreparedCase,
    TwoStreamBatchLoader,
    batch_seed,
    class_index_lookup,
    pad_to_shape,
    prepare_case,
)


def prepared(case_id: str, image: np.ndarray, label: np.ndarray | None) -> PreparedCase:
    """A PreparedCase straight from arrays (image [M, z, y, x])."""
    return PreparedCase(case_id=case_id, image=image.astype(np.float32),
                        label=None if label is None else label.astype(np.int16),
                        spacing=(1.0, 1.0, 1.0), modalities=tuple(f"m{i}" for i in range(image.shape[0])))


def blob_case(case_id: str, seed: int, shape=(16, 20, 20), labeled=True) -> PreparedCase:
    """Two channels of noise; a cube of label 1 and a smaller one of label 2."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.int16)
    label[4:9, 5:11, 6:12] = 1
    label[10:12, 12:15, 3:5] = 2
    return prepared(case_id, rng.normal(size=(2, *shape)), label if labeled else None)


# --------------------------------------------------------------------------- prepare_case


def sitk_image(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_prepare_case_aligns_normalises_and_keeps_label_values() -> None:
    shape = (10, 16, 12)  # (z, y, x) on spacing (1, 1, 2) mm in (x, y, z)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    reference_array = np.zeros(shape, np.float32)
    box = (slice(2, 8), slice(3, 13), slice(2, 10))
    reference_array[box] = (300 + 20 * z + 5 * y + 3 * x)[box]  # linear: interpolation reproduces it
    reference = sitk_image(reference_array, (1.0, 1.0, 2.0))
    # the other modality covers the same box on a twice finer grid in z: it must be resampled
    other = sitk.Resample(reference, [12, 16, 20], sitk.Transform(), sitk.sitkLinear, (0.0, 0.0, -0.5),
                          (1.0, 1.0, 1.0), reference.GetDirection(), 0.0, sitk.sitkFloat32)
    label_array = np.zeros(shape, np.uint8)
    label_array[3:6, 4:9, 3:7] = 4
    label_array[6, 10, 8] = 2
    case = Case("c", {"t2": reference, "t1": other}, sitk_image(label_array, (1.0, 1.0, 2.0)), "test")

    result = prepare_case(case, ["t1", "t2"], {"t1": "mr", "t2": "mr"}, reference="t2")
    assert result.image.dtype == np.float32 and result.image.shape == (2, *shape)
    assert result.label.dtype == np.int16
    np.testing.assert_array_equal(result.label, label_array)
    assert result.spacing == (2.0, 1.0, 1.0)
    assert result.modalities == ("t1", "t2")
    # MR: z-score over the non-zero voxels, background stays 0
    inside = result.image[1][reference_array != 0]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-4
    assert np.all(result.image[1][reference_array == 0] == 0)
    resampled = result.image[0][result.image[0] != 0]  # a voxel at the mean also z-scores to 0
    assert abs(resampled.mean()) < 0.02 and abs(resampled.std() - 1) < 0.02
    assert np.all(result.image[0][0] == 0) and np.all(result.image[0][:, 0] == 0)
    # inside the box the resampled modality lines up with the reference: the same linear ramp
    interior = (slice(3, 7), slice(3, 13), slice(2, 10))
    assert np.corrcoef(result.image[0][interior].ravel(), result.image[1][interior].ravel())[0, 1] > 0.999


def test_prepare_case_pads_small_volumes_and_refuses_missing_settings() -> None:
    array = np.full((4, 6, 5), 100.0, np.float32)
    array[1, 2, 2] = 300.0
    label = np.zeros((4, 6, 5), np.uint8)
    label[1, 2, 2] = 1
    case = Case("small", {"ct": sitk_image(array, (1.0, 1.0, 1.0))}, sitk_image(label, (1.0, 1.0, 1.0)), "test")
    result = prepare_case(case, ["ct"], {"ct": "none"}, minimum_shape=(8, 6, 8))
    assert result.shape == (8, 6, 8)
    assert result.padding == ((2, 2), (0, 0), (1, 2))
    assert result.image[0, 3, 2, 3] == 300.0 and result.label[3, 2, 3] == 1
    assert result.image[0, :2].max() == 0 and result.label.sum() == 1
    assert pad_to_shape(result, (8, 6, 8)) is result
    with pytest.raises(MultiModalSegError, match="No intensity normalisation is set for ct"):
        prepare_case(case, ["ct"], {})
    with pytest.raises(MultiModalSegError, match="has no venous image"):
        prepare_case(case, ["ct", "venous"], {"ct": "ct", "venous": "ct"})


# --------------------------------------------------------------------------- config and label mapping


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": (8, 8, 6)}, "needs equal y and x patch sizes"),
    ({"patch_size": (8, 0, 0)}, "three positive whole numbers"),
    ({"foreground_fraction": 1.5}, "must lie between 0 and 1"),
    ({"mirror_axes": (3,)}, "mirror axes"),
    ({"intensity_scale": 1.0}, "intensity jitter"),
])
def test_config_validation(changes: dict, message: str) -> None:
    with pytest.raises(MultiModalSegError, match=message):
        PatchSamplingConfig(**changes).validate()
    PatchSamplingConfig(patch_size=(8, 8, 6), rot_flip=False).validate()


def test_brats_label_values_map_to_class_indices() -> None:
    assert class_index_lookup([1, 2, 4]) == {0: 0, 1: 1, 2: 2, 4: 3}
    label = np.zeros((6, 8, 8), np.int16)
    label[1, 1:3, 1:3] = 1
    label[2, 4:6, 4:6] = 2
    label[4, 2:7, 5] = 4
    case = prepared("brats", np.ones((4, 6, 8, 8)), label)
    config = PatchSamplingConfig(patch_size=(6, 8, 8), rot_flip=False)
    sampler = PatchSampler([case], config, label_values=[1, 2, 4])
    image, classes = sampler.sample()
    assert image.shape == (4, 6, 8, 8) and image.dtype == np.float32
    assert classes.dtype == np.int64
    expected = np.select([label == 1, label == 2, label == 4], [1, 2, 3], 0)
    np.testing.assert_array_equal(classes, expected)
    with pytest.raises(MultiModalSegError, match=r"holds the value\(s\) \[4\], which are not among"):
        PatchSampler([case], config, label_values=[1, 2])
    with pytest.raises(MultiModalSegError, match="0 is the background"):
        PatchSampler([case], config, label_values=[0, 1])


# --------------------------------------------------------------------------- patches


def test_patch_shapes_and_padding_of_small_cases() -> None:
    case = blob_case("a", 0, shape=(6, 20, 20))
    sampler = PatchSampler([case], PatchSamplingConfig(patch_size=(8, 12, 12)), label_values=[1, 2], seed=1)
    assert sampler.cases[0].shape == (8, 20, 20)
    rng = np.random.default_rng(0)
    for _ in range(5):
        image, classes = sampler.sample(rng)
        assert image.shape == (2, 8, 12, 12) and classes.shape == (8, 12, 12)
        assert image.flags.c_contiguous and classes.flags.c_contiguous


def probability_random_crop_holds(voxel, shape, patch) -> float:
    """Exact chance that a uniformly placed patch contains ``voxel``."""
    p = 1.0
    for v, s, k in zip(voxel, shape, patch):
        starts = s - k + 1
        covering = sum(1 for start in range(starts) if start <= v < start + k)
        p *= covering / starts
    return p


def test_foreground_fraction_statistics() -> None:
    shape, patch = (12, 40, 40), (6, 10, 10)
    label = np.zeros(shape, np.int16)
    label[5, 20, 20] = 1  # a single foreground voxel
    case = prepared("one-voxel", np.zeros((1, *shape)), label)
    random_rate = probability_random_crop_holds((5, 20, 20), shape, patch)
    assert 0.05 < random_rate < 0.2
    draws = 600
    for fraction in (0.0, 0.5, 1.0):
        config = PatchSamplingConfig(patch_size=patch, foreground_fraction=fraction, rot_flip=False)
        sampler = PatchSampler([case], config, label_values=[1], seed=3)
        rng = np.random.default_rng(fraction.as_integer_ratio()[0])
        hits = sum(int(sampler.sample(rng)[1].any()) for _ in range(draws))
        expected = fraction + (1 - fraction) * random_rate
        if fraction == 1.0:
            assert hits == draws  # every patch holds foreground
        else:
            assert abs(hits / draws - expected) < 4 * np.sqrt(expected * (1 - expected) / draws)


def test_forced_patches_visit_every_foreground_class() -> None:
    case = blob_case("a", 0, shape=(24, 40, 40))
    config = PatchSamplingConfig(patch_size=(4, 4, 4), foreground_fraction=1.0, rot_flip=False)
    sampler = PatchSampler([case], config, label_values=[1, 2])
    rng = np.random.default_rng(5)
    seen = [set(np.unique(sampler.sample(rng)[1]).tolist()) for _ in range(60)]
    assert all(s & {1, 2} for s in seen)
    assert any(2 in s for s in seen) and any(1 in s for s in seen)


def test_rot_flip_and_mirroring_keep_image_and_label_aligned() -> None:
    rng = np.random.default_rng(0)
    shape = (10, 24, 24)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    threshold = np.percentile(field, 70)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    image = np.stack([field, z, y, x])
    case = prepared("aligned", image, (field > threshold).astype(np.int16))
    config = PatchSamplingConfig(patch_size=(6, 12, 12), rot_flip=True, mirror_axes=(0,))
    sampler = PatchSampler([case], config, label_values=[1], seed=0)
    varies_along = {"x": 0, "y": 0}
    z_flipped = 0
    for _ in range(80):
        patch, classes = sampler.sample(rng)
        np.testing.assert_array_equal(patch[0] > threshold, classes == 1)
        # the x coordinate channel now varies along y or x: rotations really happen
        varies_along["x" if np.ptp(patch[3][0, 0, :]) > 0 else "y"] += 1
        z_flipped += int(patch[1][0, 0, 0] > patch[1][-1, 0, 0])
        # z only ever mirrors: each z slice keeps one z value
        assert np.ptp(patch[1], axis=(1, 2)).max() == 0
    assert varies_along["x"] > 10 and varies_along["y"] > 10
    assert 10 < z_flipped < 70


def test_intensity_jitter_scales_and_shifts_each_channel() -> None:
    case = prepared("flat", np.ones((2, 8, 8, 8)), None)
    config = PatchSamplingConfig(patch_size=(4, 4, 4), intensity_scale=0.2, intensity_shift=0.1)
    sampler = PatchSampler([case], config, label_values=[1])
    values = []
    for _ in range(30):
        image, classes = sampler.sample()
        assert classes is None
        assert np.ptp(image, axis=(1, 2, 3)).max() < 1e-6  # one factor per channel
        values.extend(image[:, 0, 0, 0].tolist())
    assert 0.7 <= min(values) < 0.95 and 1.05 < max(values) <= 1.3


def test_rotation_zoom_gamma_and_noise_keep_label_aligned_and_vary_the_patch() -> None:
    """Opt-in spatial/appearance augmentation (the one-volume tissue model trains with it)."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    shape = (24, 24, 24)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 3.0)
    field /= field.std()
    threshold = np.percentile(field, 60)
    label = (field > threshold).astype(np.int16)
    case = prepared("smooth", np.stack([field + 5.0]), label)  # positive image: gamma acts on non-zero voxels
    config = PatchSamplingConfig(patch_size=(12, 12, 12), rot_flip=False, rotation_degrees=20.0, scale_range=0.2,
                                 gamma_range=0.0, noise_std=0.0)
    sampler = PatchSampler([case], config, label_values=[1], seed=0)
    plain = PatchSampler([case], PatchSamplingConfig(patch_size=(12, 12, 12), rot_flip=False), [1], seed=0)
    differs = 0
    for seed in range(20):
        image, classes = sampler.sample_case(0, np.random.default_rng(seed))
        reference, _ = plain.sample_case(0, np.random.default_rng(seed))
        inside = image[0] > 0  # interpolated voxels (outside the volume reads 0)
        # linear image vs nearest label: they agree away from the threshold surface
        confident = inside & (np.abs(image[0] - 5.0 - threshold) > 0.05)
        assert np.mean((image[0][confident] - 5.0 > threshold) == (classes[confident] == 1)) > 0.97
        differs += int(np.abs(image - reference).max() > 1e-3)
    assert differs >= 18
    gamma = PatchSampler([case], PatchSamplingConfig(patch_size=(12, 12, 12), rot_flip=False, gamma_range=0.5,
                                                     noise_std=0.1), [1], seed=0)
    image, _ = gamma.sample_case(0, np.random.default_rng(3))
    reference, _ = plain.sample_case(0, np.random.default_rng(3))
    assert image.shape == reference.shape and not np.allclose(image, reference)
    with pytest.raises(MultiModalSegError, match="rotation_degrees"):
        PatchSamplingConfig(patch_size=(8, 8, 8), rotation_degrees=-1.0).validate()


# --------------------------------------------------------------------------- batches


def small_cases(labeled: int, unlabeled: int) -> list[PreparedCase]:
    return ([blob_case(f"l{i}", i) for i in range(labeled)]
            + [blob_case(f"u{i}", 100 + i, labeled=False) for i in range(unlabeled)])


def take(loader, count: int) -> list[dict]:
    batches = [next(loader) for _ in range(count)]
    loader.close()
    return batches


def assert_same_batches(first: list[dict], second: list[dict]) -> None:
    for a, b in zip(first, second):
        assert a["case_ids"] == b["case_ids"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_two_stream_batches_hold_labeled_then_unlabeled_patches_and_sdf() -> None:
    config = PatchSamplingConfig(patch_size=(8, 12, 12), foreground_fraction=0.5)
    loader = TwoStreamBatchLoader(small_cases(2, 3), config, [1, 2], batch_size=4, labeled_batch_size=2,
                                  with_sdf=True, seed=7)
    for batch in take(loader, 3):
        assert batch["image"].shape == (4, 2, 8, 12, 12) and batch["image"].dtype == torch.float32
        assert batch["label"].shape == (2, 8, 12, 12) and batch["label"].dtype == torch.int64
        assert batch["sdf"].shape == (2, 2, 8, 12, 12) and batch["sdf"].dtype == torch.float32
        assert batch["labeled_batch_size"] == 2
        assert [i[0] for i in batch["case_ids"]] == ["l", "l", "u", "u"]
        for index in range(2):
            for k in range(2):
                expected = signed_distance_map((batch["label"][index] == k + 1).numpy()[None])[0]
                np.testing.assert_allclose(batch["sdf"][index, k].numpy(), expected, atol=1e-6)
        assert (batch["sdf"] != 0).any()


def test_supervised_batches_use_labeled_cases_only() -> None:
    config = PatchSamplingConfig.for_maml((8, 12, 12))
    loader = TwoStreamBatchLoader(small_cases(2, 2), config, [1, 2], batch_size=3, seed=0)
    batch = next(loader)
    loader.close()
    assert batch["image"].shape[0] == 3 and batch["label"].shape[0] == 3 and "sdf" not in batch
    assert all(case_id.startswith("l") for case_id in batch["case_ids"])


def test_batch_loader_guards() -> None:
    config = PatchSamplingConfig(patch_size=(8, 12, 12))
    with pytest.raises(MultiModalSegError, match="need unlabeled cases, and there are none"):
        TwoStreamBatchLoader(small_cases(2, 0), config, [1, 2], batch_size=4, labeled_batch_size=2)
    with pytest.raises(MultiModalSegError, match="No case has a label"):
        TwoStreamBatchLoader(small_cases(0, 2), config, [1, 2], batch_size=2)
    with pytest.raises(MultiModalSegError, match="labeled batch size 5"):
        TwoStreamBatchLoader(small_cases(2, 2), config, [1, 2], batch_size=4, labeled_batch_size=5)
    with pytest.raises(MultiModalSegError, match="rank 2 must lie in 0..1"):
        TwoStreamBatchLoader(small_cases(2, 2), config, [1, 2], batch_size=2, rank=2, world_size=2)


def test_batches_are_deterministic_per_seed_and_differ_between_ranks() -> None:
    config = PatchSamplingConfig(patch_size=(8, 12, 12), foreground_fraction=0.33)
    cases = small_cases(3, 3)

    def batches(**options) -> list[dict]:
        return take(TwoStreamBatchLoader(cases, config, [1, 2], batch_size=2, labeled_batch_size=1, **options), 4)

    reference = batches(seed=11)
    assert_same_batches(reference, batches(seed=11))
    other_seed = batches(seed=12)
    assert not all(torch.equal(a["image"], b["image"]) for a, b in zip(reference, other_seed))
    rank0 = batches(seed=11, rank=0, world_size=2)
    rank1 = batches(seed=11, rank=1, world_size=2)
    assert_same_batches(reference, rank0)
    assert not any(torch.equal(a["image"], b["image"]) for a, b in zip(rank0, rank1))
    assert_same_batches(rank1, batches(seed=11, rank=1, world_size=2))


def test_batches_from_worker_processes_are_deterministic() -> None:
    config = PatchSamplingConfig(patch_size=(8, 12, 12), foreground_fraction=0.33)
    cases = small_cases(3, 3)

    def batches(**options) -> list[dict]:
        return take(TwoStreamBatchLoader(cases, config, [1, 2], batch_size=2, labeled_batch_size=1,
                                         with_sdf=True, seed=5, **options), 4)

    started = time.perf_counter()
    first = batches(num_workers=2)
    assert_same_batches(first, batches(num_workers=2))
    # batch i is drawn from batch_seed(seed, rank, i), whichever process draws it: the stream does
    # not depend on the number of workers
    assert_same_batches(first, batches())
    loader = TwoStreamBatchLoader(cases, config, [1, 2], batch_size=2, labeled_batch_size=1, with_sdf=True, seed=5)
    assert_same_batches(first, [loader.dataset.make_batch(np.random.default_rng(batch_seed(5, 0, i)))
                                for i in range(4)])
    assert not torch.equal(first[0]["image"], first[1]["image"])
    assert time.perf_counter() - started < 30


def test_a_stream_started_at_batch_k_continues_the_stream_from_batch_0() -> None:
    """What a resumed training run relies on (train --resume starts at the checkpoint's iteration)."""
    config = PatchSamplingConfig(patch_size=(8, 12, 12), foreground_fraction=0.33)
    cases = small_cases(3, 3)

    def batches(count: int, **options) -> list[dict]:
        return take(TwoStreamBatchLoader(cases, config, [1, 2], batch_size=2, labeled_batch_size=1, seed=5,
                                         **options), count)

    whole = batches(5)
    assert_same_batches(whole[3:], batches(2, start_batch=3))
    assert_same_batches(whole[3:], batches(2, start_batch=3, num_workers=2))


def test_phantom_cases_from_spec_to_batches() -> None:
    """End to end on BraTS-like phantoms: load, check, prepare, sample with BraTS label values."""
    from MultiModalSegLib.datasets import load_cases, validate_training_cases

    modalities = ["t1", "t1ce", "t2", "flair"]
    cases = load_cases("phantom:brain-mr4:2:0?shape=16x24x24", modalities=modalities)
    validate_training_cases(cases, modalities, require_label=True, reference="t1ce", label_values=[1, 2, 4])
    patch = (16, 16, 16)
    prepared_cases = [prepare_case(case, modalities, dict.fromkeys(modalities, "mr"), reference="t1ce",
                                   minimum_shape=patch) for case in cases]
    assert set(np.unique(np.concatenate([c.label.ravel() for c in prepared_cases]))) == {0, 1, 2, 4}
    assert prepared_cases[0].image.shape == (4, 16, 24, 24)
    config = PatchSamplingConfig.for_dtc(patch, foreground_fraction=1.0)
    loader = TwoStreamBatchLoader(prepared_cases, config, [1, 2, 4], batch_size=2, with_sdf=True, seed=0)
    labels = torch.cat([batch["label"] for batch in take(loader, 4)])
    assert set(torch.unique(labels).tolist()) <= {0, 1, 2, 3} and 3 in set(torch.unique(labels).tolist())
