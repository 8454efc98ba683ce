"""Tests of the synthetic cases (MultiModalSegLib.phantoms): structure, geometry,
determinism, tissue contrasts per modality, non-triviality and the shifted appearance.

The cases are real phantoms drawn at small shapes (one default-size liver case) so the
file runs in well under a minute; cases are cached per module.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.phantoms import PHANTOM_KINDS, make_case

SMALL = (24, 48, 48)
MEDIUM = (32, 64, 64)
FORCED = {"liver-ct2": {"lesions": 2}, "brain-mr4": {"tumor_type": "glioblastoma"}}


@functools.cache
def _case(kind: str, seed: int, shape: tuple | None, appearance: str = "standard", extra: tuple = ()) -> dict:
    options = dict(extra)
    if shape is not None:
        options["shape"] = shape
    return make_case(kind, seed, appearance=appearance, tissue_map=True, **options)


def case(kind: str, seed: int = 0, shape: tuple | None = SMALL, appearance: str = "standard", **extra) -> dict:
    return _case(kind, seed, shape, appearance, tuple(sorted(extra.items())))


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def tissue_mask(c: dict, *names: str) -> np.ndarray:
    """Voxels of the named tissues (names as in meta["tissue_names"])."""
    codes = [code for code, name in c["meta"]["tissue_names"].items() if name in names]
    assert codes, f"no tissue named {names}"
    return np.isin(array(c["tissue"]), codes)


def interior(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """The mask without its in-plane border (no partial volume)."""
    cross = ndimage.generate_binary_structure(3, 1)
    cross[0] = cross[2] = False
    return ndimage.binary_erosion(mask, cross, iterations=iterations)


def best_window_dice(image: np.ndarray, target: np.ndarray, bins: int = 200) -> float:
    """Dice of the best intensity window [low, high] (every pair of histogram bin edges):
    the best any single-image threshold segmentation can do."""
    low, high = np.percentile(image, [0.05, 99.95])
    edges = np.linspace(low, high, bins + 1)
    index = np.clip(np.digitize(image, edges) - 1, 0, bins - 1)
    in_target = np.concatenate([[0.0], np.cumsum(np.bincount(index[target], minlength=bins))])
    in_all = np.concatenate([[0.0], np.cumsum(np.bincount(index.ravel(), minlength=bins))])
    i, j = np.triu_indices(bins + 1, 1)
    true_positive = in_target[j] - in_target[i]
    selected = in_all[j] - in_all[i]
    return float((2.0 * true_positive / (selected + target.sum())).max())


# ---------------------------------------------------------------- structure and geometry


@pytest.mark.parametrize("kind", sorted(PHANTOM_KINDS))
def test_case_has_modalities_labels_and_one_grid(kind):
    info = PHANTOM_KINDS[kind]
    c = case(kind, 1, **FORCED.get(kind, {}))
    assert tuple(c["images"]) == info.modalities
    assert info.reference_modality in info.modalities
    label = array(c["label"])
    assert label.dtype == np.uint8 and label.shape == SMALL
    assert set(np.unique(label)) == set(info.labels.values())
    expected_spacing = tuple(s * d / n for s, d, n in zip(info.default_spacing, info.default_shape, SMALL))
    for image in [*c["images"].values(), c["tissue"]]:
        assert image.GetSize() == c["label"].GetSize()
        assert image.GetOrigin() == c["label"].GetOrigin()
        assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        np.testing.assert_allclose(image.GetSpacing(), tuple(reversed(expected_spacing)))
    for image in c["images"].values():
        assert image.GetPixelID() == sitk.sitkFloat32
        assert np.isfinite(array(image)).all()


def test_spacing_is_anisotropic_for_ct_and_isotropic_for_atrium():
    liver = case("liver-ct2", 0, shape=None, **FORCED["liver-ct2"])
    sx, sy, sz = liver["label"].GetSpacing()
    assert sx == sy and sz >= 1.5 * sx
    assert liver["label"].GetSize() == (128, 128, 48)
    pancreas = case("pancreas-ct", 0, shape=MEDIUM).get("label").GetSpacing()
    assert pancreas[2] > pancreas[0]
    atrium = PHANTOM_KINDS["atrium-mr"]
    assert atrium.default_shape == (80, 112, 112) and len(set(atrium.default_spacing)) == 1


@pytest.mark.parametrize("kind", sorted(PHANTOM_KINDS))
def test_same_seed_is_identical_and_other_seeds_differ(kind):
    first = make_case(kind, 7, shape=SMALL)
    again = make_case(kind, 7, shape=SMALL)
    other = make_case(kind, 8, shape=SMALL)
    for name in first["images"]:
        np.testing.assert_array_equal(array(first["images"][name]), array(again["images"][name]))
        assert not np.array_equal(array(first["images"][name]), array(other["images"][name]))
    np.testing.assert_array_equal(array(first["label"]), array(again["label"]))
    assert np.mean(array(first["label"]) != array(other["label"])) > 0.002


def test_seeds_vary_the_anatomy():
    fractions, lesion_counts, positions = [], set(), set()
    for seed in range(6):
        c = case("liver-ct2", seed)
        label = array(c["label"])
        fractions.append(np.mean(label > 0))
        lesion_counts.add(len(c["meta"]["lesions"]))
        positions.add(tuple(np.round(ndimage.center_of_mass(label == 1))))
    assert max(fractions) / min(fractions) > 1.1
    assert len(lesion_counts) >= 2
    assert len(positions) == 6


@pytest.mark.parametrize("kind", sorted(PHANTOM_KINDS))
def test_small_shape_keeps_the_same_patient(kind):
    small = array(case(kind, 2, **FORCED.get(kind, {}))["label"])
    medium = array(case(kind, 2, shape=MEDIUM, **FORCED.get(kind, {}))["label"])
    for value in np.unique(medium)[1:]:
        ratio = np.mean(small == value) / np.mean(medium == value)
        assert 0.5 < ratio < 2.0, (value, ratio)


@pytest.mark.parametrize(
    "kind, label_values, low, high",
    [
        ("liver-ct2", (1, 2), 0.01, 0.08),
        ("liver-ct2", (2,), 0.0002, 0.03),
        ("brain-mr4", (1, 2, 4), 0.002, 0.08),
        ("atrium-mr", (1,), 0.02, 0.14),
        ("pancreas-ct", (1,), 0.002, 0.025),
    ],
)
def test_label_volume_fractions_are_plausible(kind, label_values, low, high):
    for seed in range(3):
        fraction = np.mean(np.isin(array(case(kind, seed, shape=MEDIUM, **FORCED.get(kind, {}))["label"]), label_values))
        assert low < fraction < high, (seed, fraction)


# ---------------------------------------------------------------- liver-ct2 contrasts


def test_liver_ct_hounsfield_units_follow_the_phases():
    c = case("liver-ct2", 0, shape=None, misregistration=False, **FORCED["liver-ct2"])
    arterial, venous = array(c["images"]["arterial"]), array(c["images"]["venous"])
    liver = interior(tissue_mask(c, "liver"), 2)
    aorta = interior(tissue_mask(c, "aorta"))
    fat = interior(tissue_mask(c, "fat"), 2)
    air = tissue_mask(c, "air")
    assert 90 < venous[liver].mean() < 120
    assert 55 < arterial[liver].mean() < 80
    assert venous[liver].mean() > arterial[liver].mean() + 25
    assert arterial[aorta].mean() > 230 and arterial[aorta].mean() > venous[aorta].mean() + 80
    portal = interior(tissue_mask(c, "portal vein"))
    assert venous[portal].mean() > arterial[portal].mean() + 15
    assert abs(venous[fat].mean() + 100) < 15
    assert abs(np.median(venous[air]) + 1000) < 30
    assert 8 < venous[fat].std() < 25  # noise ~10-20 HU


@pytest.mark.parametrize(
    "lesion_type, arterial_sign, venous_sign",
    [("hcc", +1, -1), ("hypovascular", -1, -1), ("arterial_only", +1, 0), ("venous_only", 0, -1)],
)
def test_liver_lesion_enhancement_differs_by_phase(lesion_type, arterial_sign, venous_sign):
    c = case("liver-ct2", 3, shape=None, lesions=1, lesion_types=(lesion_type,), misregistration=False)
    label = array(c["label"])
    tumour, liver = interior(label == 2), interior(label == 1, 2) & tissue_mask(c, "liver")
    assert tumour.sum() > 10
    contrasts = {}
    for phase, sign in (("arterial", arterial_sign), ("venous", venous_sign)):
        image = array(c["images"][phase])
        contrast = image[tumour].mean() - image[liver].mean()
        contrasts[phase] = contrast
        if sign != 0:
            assert sign * contrast > 8, (phase, contrast)
    for phase, sign in (("arterial", arterial_sign), ("venous", venous_sign)):
        if sign == 0:  # seen mainly in the other phase
            other = contrasts["venous" if phase == "arterial" else "arterial"]
            assert abs(contrasts[phase]) < 0.4 * abs(other), contrasts


def test_arterial_phase_is_shifted_against_the_venous_reference():
    c = case("liver-ct2", 4, shape=MEDIUM)
    shift = np.asarray(c["meta"]["arterial_shift_voxels"])
    assert 1.0 <= np.hypot(shift[1], shift[2]) <= 2.0 and abs(shift[0]) <= 1.0
    body = {phase: array(c["images"][phase]) > -400 for phase in ("arterial", "venous")}
    measured = np.subtract(ndimage.center_of_mass(body["arterial"]), ndimage.center_of_mass(body["venous"]))
    np.testing.assert_allclose(measured[1:], shift[1:], atol=0.2)
    aligned = make_case("liver-ct2", 4, shape=MEDIUM, misregistration=False)
    assert aligned["meta"]["arterial_shift_voxels"] == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------- brain-mr4 contrasts


def test_brain_mr_sequences_have_the_textbook_contrasts():
    c = case("brain-mr4", 1, shape=MEDIUM, tumor_type="glioblastoma")
    t1, t1ce, t2, flair = (array(c["images"][m]) for m in ("t1", "t1ce", "t2", "flair"))
    wm = interior(tissue_mask(c, "wm"))
    gm = tissue_mask(c, "gm")
    csf = interior(tissue_mask(c, "csf"))
    label = array(c["label"])
    enhancing, edema = label == 4, interior(label == 2)
    assert t1[wm].mean() > t1[gm].mean() > t1[csf].mean()
    assert t2[csf].mean() > t2[gm].mean() > t2[wm].mean()
    assert flair[csf].mean() < 0.5 * flair[wm].mean()
    assert flair[edema].mean() > 1.3 * flair[wm].mean()
    assert t1ce[enhancing].mean() > 1.3 * t1ce[wm].mean()
    assert t1ce[enhancing].mean() / t1[enhancing].mean() > 1.5 * t1ce[wm].mean() / t1[wm].mean()
    assert t1ce[label == 1].mean() < t1ce[enhancing].mean()
    assert (array(c["tissue"]) == 0).any() and all((image[array(c["tissue"]) == 0] == 0).all() for image in (t1, t2))


def test_brain_tumour_types_and_skull_stripping():
    non_enhancing = array(case("brain-mr4", 2, tumor_type="non_enhancing")["label"])
    assert 4 not in np.unique(non_enhancing) and {1, 2} <= set(np.unique(non_enhancing))
    full = array(case("brain-mr4", 2)["images"]["t1"])
    stripped = array(case("brain-mr4", 2, skull_stripped=True)["images"]["t1"])
    assert 0.3 < np.count_nonzero(stripped) / np.count_nonzero(full) < 0.8
    with pytest.raises(MultiModalSegError, match="tumor_type"):
        make_case("brain-mr4", 0, shape=SMALL, tumor_type="meningioma")


# ---------------------------------------------------------------- non-trivial, learnable


@pytest.mark.parametrize(
    "kind, label_values, modalities",
    [
        ("liver-ct2", (2,), ("arterial", "venous")),
        ("brain-mr4", (1, 2, 4), ("flair", "t2")),
        ("brain-mr4", (4,), ("t1ce",)),
        ("atrium-mr", (1,), ("mri",)),
        ("pancreas-ct", (1,), ("ct",)),
    ],
)
def test_no_intensity_window_segments_the_target(kind, label_values, modalities):
    for seed in range(2):
        c = case(kind, seed, shape=MEDIUM, **FORCED.get(kind, {}))
        target = np.isin(array(c["label"]), label_values)
        for modality in modalities:
            dice = best_window_dice(array(c["images"][modality]), target)
            assert dice < 0.9, (seed, modality, dice)


@pytest.mark.parametrize("kind, label_value", [("atrium-mr", 1), ("pancreas-ct", 1), ("liver-ct2", 1)])
def test_target_is_visible_against_its_surroundings(kind, label_value):
    """Learnable: the target differs from the shell around it by more than the noise."""
    c = case(kind, 0, shape=MEDIUM)
    image = array(next(iter(c["images"].values())))
    target = array(c["label"]) == label_value
    shell = ndimage.binary_dilation(target, iterations=2) & ~target & (array(c["label"]) == 0)
    core = interior(target)
    noise = image[core].std()
    assert abs(image[core].mean() - image[shell].mean()) > 0.5 * noise


# ---------------------------------------------------------------- shifted appearance


@pytest.mark.parametrize(
    "kind, modality, tissue_a, tissue_b",
    [
        ("liver-ct2", "arterial", "liver", "aorta"),
        ("brain-mr4", "t1", "wm", "gm"),
        ("atrium-mr", "mri", "fat", "la_blood"),
        ("pancreas-ct", "ct", "pancreas", "liver"),
    ],
)
def test_shifted_appearance_changes_contrast_and_noise_not_anatomy(kind, modality, tissue_a, tissue_b):
    standard = case(kind, 5, shape=MEDIUM)
    shifted = case(kind, 5, shape=MEDIUM, appearance="shifted")
    np.testing.assert_array_equal(array(standard["label"]), array(shifted["label"]))
    a, b = interior(tissue_mask(standard, tissue_a)), interior(tissue_mask(standard, tissue_b))
    ratios = []
    for c in (standard, shifted):
        image = array(c["images"][modality])
        ratios.append(image[a].mean() / image[b].mean())
    assert abs(ratios[0] - ratios[1]) > 0.1 * abs(ratios[0]), ratios
    noise = [array(c["images"][modality])[a].std() / abs(array(c["images"][modality])[a].mean()) for c in (standard, shifted)]
    assert noise[1] != pytest.approx(noise[0], rel=0.05)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kind, seed, options, message",
    [
        ("kidney-ct", 0, {}, "Unknown phantom kind"),
        ("liver-ct2", 0, {"colour": "red"}, "no option"),
        ("liver-ct2", 0, {"appearance": "dark"}, "Unknown appearance"),
        ("atrium-mr", 0, {"shape": (4, 48, 48)}, "shape"),
        ("atrium-mr", 0, {"shape": (24, 48)}, "shape"),
        ("atrium-mr", -1, {}, "seed"),
        ("liver-ct2", 0, {"lesion_types": ["cyst"]}, "lesion type"),
    ],
)
def test_user_errors_say_what_to_do(kind, seed, options, message):
    with pytest.raises(MultiModalSegError, match=message):
        make_case(kind, seed, **options)


def test_kind_table_describes_every_kind():
    for name, info in PHANTOM_KINDS.items():
        assert info.name == name and info.description
        assert info.labels["background"] == 0 and 0 not in info.foreground_labels.values()
        assert len(info.default_shape) == len(info.default_spacing) == 3
        assert info.appearances == ("standard", "shifted")
        assert set(info.label_colors) == set(info.foreground_labels.values())
