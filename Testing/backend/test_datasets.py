"""Reading, writing and checking training cases (MultiModalSegLib.datasets) on real files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MultiModalSegLib.datasets import (
    PHANTOM_SEED_STRIDE,
    Case,
    geometry_difference,
    label_values_of,
    load_cases,
    validate_training_cases,
    write_cases_json,
    write_cases_nnunet,
)
from MultiModalSegLib.errors import MultiModalSegError

SHAPE = (8, 12, 10)  # (z, y, x)


def make_image(values: np.ndarray, spacing=(0.8, 0.9, 1.5), origin=(-3.0, 4.0, 10.0)) -> sitk.Image:
    """A SimpleITK image from a (z, y, x) array with a non-trivial grid (spacing in x, y, z)."""
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def make_case(case_id: str, seed: int, modalities=("t1", "flair"), labeled=True, label_value=1) -> Case:
    rng = np.random.default_rng(seed)
    images = {name: make_image(rng.normal(100, 20, SHAPE).astype(np.float32)) for name in modalities}
    label = None
    if labeled:
        values = np.zeros(SHAPE, dtype=np.uint8)
        values[2:5, 3:7, 2:6] = label_value
        values[5, 8, 7] = 2
        label = make_image(values)
    return Case(case_id=case_id, images=images, label=label, source="test")


def assert_same_image(a: sitk.Image, b: sitk.Image) -> None:
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert geometry_difference(a, b) is None


def assert_same_cases(loaded: list[Case], written: list[Case]) -> None:
    assert [c.case_id for c in loaded] == [c.case_id for c in written]
    for got, want in zip(loaded, written):
        assert got.modalities == want.modalities
        for name in want.images:
            assert_same_image(got.images[name], want.images[name])
        assert got.is_labeled == want.is_labeled
        if want.label is not None:
            assert_same_image(got.label, want.label)


# --------------------------------------------------------------------------- nnU-Net layout


def test_nnunet_round_trip_train_test_and_all(tmp_path: Path) -> None:
    labeled = [make_case(f"case{i}", i) for i in range(3)]
    unlabeled = [make_case("extra", 9, labeled=False)]
    root = write_cases_nnunet(labeled + unlabeled, tmp_path / "Dataset501_Test", "Test",
                              label_names={"atrium": 1, "vessel": 2})

    description = json.loads((root / "dataset.json").read_text())
    assert description["channel_names"] == {"0": "t1", "1": "flair"}
    assert description["labels"] == {"background": 0, "atrium": 1, "vessel": 2}
    assert description["numTraining"] == 3
    assert (root / "imagesTr" / "case0_0001.nii.gz").is_file()
    assert (root / "labelsTr" / "case2.nii.gz").is_file()
    assert (root / "imagesTs" / "extra_0000.nii.gz").is_file()
    assert not (root / "labelsTr" / "extra.nii.gz").exists()

    assert_same_cases(load_cases(str(root)), labeled)
    assert_same_cases(load_cases(f"{root}:train"), labeled)
    assert_same_cases(load_cases(f"{root}:test"), unlabeled)
    assert_same_cases(load_cases(str(root / "imagesTs")), unlabeled)
    everything = load_cases(f"{root}:all")
    assert [c.case_id for c in everything] == ["case0", "case1", "case2", "extra"]
    assert [c.case_id for c in load_cases(f"{root}:all", labeled=False)] == ["extra"]
    assert [c.case_id for c in load_cases(f"{root}:all", labeled=True)] == ["case0", "case1", "case2"]


def test_nnunet_reader_selects_modalities_and_detects_missing_labels(tmp_path: Path) -> None:
    root = write_cases_nnunet([make_case(f"c{i}", i) for i in range(2)], tmp_path / "ds", "ds")
    (root / "labelsTr" / "c1.nii.gz").unlink()
    cases = load_cases(str(root), modalities=["flair"])
    assert [c.modalities for c in cases] == [["flair"], ["flair"]]
    assert [c.is_labeled for c in cases] == [True, False]
    # case-insensitive match keeps the requested spelling
    assert load_cases(str(root), modalities=["FLAIR", "T1"])[0].modalities == ["FLAIR", "T1"]
    with pytest.raises(MultiModalSegError, match=r"Case 'c0' .* has no 'adc' image"):
        load_cases(str(root), modalities=["adc"])
    with pytest.raises(MultiModalSegError, match="holds no labeled cases"):
        load_cases(f"{root}:test", labeled=True)


@pytest.mark.parametrize("suffix", ["", ":train", ":all", "/imagesTr"])
def test_an_nnunet_folder_without_dataset_json_names_the_missing_file(tmp_path: Path, suffix: str) -> None:
    """Issue 11, item 6: it said "holds no cases" (the folder was read as a BraTS layout)."""
    root = write_cases_nnunet([make_case("c0", 0)], tmp_path / "Dataset001_X", "X")
    (root / "dataset.json").unlink()
    with pytest.raises(MultiModalSegError) as error:
        load_cases(f"{root}{suffix}")
    assert "has no dataset.json" in str(error.value) and str(root) in str(error.value)
    assert "channel_names" in str(error.value)


def test_nnunet_reader_refuses_a_case_with_a_missing_channel(tmp_path: Path) -> None:
    root = write_cases_nnunet([make_case("c0", 0), make_case("c1", 1)], tmp_path / "ds", "ds")
    (root / "imagesTr" / "c1_0001.nii.gz").unlink()
    with pytest.raises(MultiModalSegError, match=r"Case 'c1' .* lacks c1_0001.nii.gz"):
        load_cases(str(root))


def test_nnunet_v1_modality_key_is_read(tmp_path: Path) -> None:
    root = write_cases_nnunet([make_case("c0", 0)], tmp_path / "ds", "ds")
    description = json.loads((root / "dataset.json").read_text())
    description["modality"] = description.pop("channel_names")
    (root / "dataset.json").write_text(json.dumps(description))
    assert load_cases(str(root))[0].modalities == ["t1", "flair"]


# --------------------------------------------------------------------------- BraTS layout


def write_brats_case(root: Path, case_id: str, seed: int, with_label: bool, separator: str = "_",
                     names=("t1", "t1ce", "t2", "flair")) -> Case:
    case = make_case(case_id, seed, modalities=names, labeled=with_label, label_value=4)
    folder = root / case_id
    folder.mkdir(parents=True)
    for name, image in case.images.items():
        sitk.WriteImage(image, str(folder / f"{case_id}{separator}{name}.nii.gz"))
    if case.label is not None:
        sitk.WriteImage(case.label, str(folder / f"{case_id}{separator}seg.nii.gz"))
    return case


def test_brats_folder_reads_labeled_and_unlabeled_cases(tmp_path: Path) -> None:
    first = write_brats_case(tmp_path, "BraTS_001", 0, with_label=True)
    second = write_brats_case(tmp_path, "BraTS_002", 1, with_label=False)
    (tmp_path / "notes.txt").write_text("not a case")
    (tmp_path / "empty_folder").mkdir()

    cases = load_cases(str(tmp_path), modalities=["t1", "t1ce", "t2", "flair"])
    assert_same_cases(cases, [first, second])
    assert sorted(cases[0].images) == ["flair", "t1", "t1ce", "t2"]
    assert label_values_of(cases) == [2, 4]

    reordered = load_cases(str(tmp_path), modalities=["flair", "t1"], labeled=True)
    assert [c.case_id for c in reordered] == ["BraTS_001"]
    assert reordered[0].modalities == ["flair", "t1"]


def test_brats_2023_dash_naming(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "BraTS-GLI-00000-000", 0, True, separator="-", names=("t1n", "t1c", "t2w", "t2f"))
    case = load_cases(str(tmp_path))[0]
    assert sorted(case.modalities) == ["t1c", "t1n", "t2f", "t2w"]
    assert case.is_labeled


# --------------------------------------------------------------------------- JSON list


def test_json_round_trip_with_relative_paths(tmp_path: Path) -> None:
    cases = [make_case("a", 0), make_case("b", 1, labeled=False)]
    json_path = write_cases_json(cases, tmp_path / "lists" / "cases.json")
    entries = json.loads(json_path.read_text())
    assert entries[0]["images"]["t1"] == "cases_images/a_t1.nii.gz"
    assert entries[0]["label"] == "cases_images/a_label.nii.gz"
    assert "label" not in entries[1]
    assert_same_cases(load_cases(str(json_path)), cases)


def test_json_case_list_object_names_the_labels(tmp_path: Path) -> None:
    """``{"cases": [...], "labels": {...}}``: training names its labels from it (a bare list gets label_<v> names)."""
    from MultiModalSegLib.training.data import describe_labels

    cases = [make_case("a", 0)]
    entries = json.loads(write_cases_json(cases, tmp_path / "cases.json").read_text())
    listing = tmp_path / "named.json"
    listing.write_text(json.dumps({"cases": entries, "labels": {"background": 0, "liver": 1, "tumor": 2}}))
    assert_same_cases(load_cases(str(listing)), cases)
    assert describe_labels(str(listing), [1, 2]).names == ["liver", "tumor"]
    assert describe_labels(str(tmp_path / "cases.json"), [1, 3]).names == ["label_1", "label_3"]


def test_json_list_reports_missing_files_and_bad_entries(tmp_path: Path) -> None:
    json_path = tmp_path / "cases.json"
    json_path.write_text(json.dumps([{"id": "x", "images": {"t1": "nowhere.nii.gz"}}]))
    with pytest.raises(MultiModalSegError, match=r"'t1' image of case 'x' file .*nowhere.nii.gz does not exist"):
        load_cases(str(json_path))
    json_path.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(MultiModalSegError, match=r"Entry 0 .* needs an \"images\" object"):
        load_cases(str(json_path))
    json_path.write_text("{not json")
    with pytest.raises(MultiModalSegError, match="Cannot read the case list"):
        load_cases(str(json_path))


# --------------------------------------------------------------------------- specs


def test_unknown_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MultiModalSegError, match="does not exist and is not a phantom: spec"):
        load_cases(str(tmp_path / "missing"))
    text_file = tmp_path / "data.txt"
    text_file.write_text("x")
    with pytest.raises(MultiModalSegError, match="Cannot tell what"):
        load_cases(str(text_file))
    with pytest.raises(MultiModalSegError, match="holds no cases"):
        load_cases(str(tmp_path))  # a folder with no case subfolders
    with pytest.raises(MultiModalSegError, match="No data was given"):
        load_cases("  ")


def test_phantom_spec_errors() -> None:
    with pytest.raises(MultiModalSegError, match="Cannot read the phantom spec"):
        load_cases("phantom:")
    with pytest.raises(MultiModalSegError, match="must be whole numbers"):
        load_cases("phantom:liver-ct2:many")
    with pytest.raises(MultiModalSegError, match="three positive sizes"):
        load_cases("phantom:liver-ct2:1:0?shape=8x8")
    with pytest.raises(MultiModalSegError, match="Unknown option 'size'"):
        load_cases("phantom:liver-ct2:1:0?size=8x8x8")
    with pytest.raises(MultiModalSegError, match="Unknown phantom kind 'nonsense'"):
        load_cases("phantom:nonsense:1")


def test_phantom_spec_follows_the_seed_rule() -> None:
    phantoms = pytest.importorskip("MultiModalSegLib.phantoms")
    if not getattr(phantoms, "PHANTOM_KINDS", None):
        pytest.skip("the phantom package exposes no kinds yet")
    kind = "liver-ct2" if "liver-ct2" in phantoms.PHANTOM_KINDS else min(phantoms.PHANTOM_KINDS)
    shape = (12, 24, 24)
    cases = load_cases(f"phantom:{kind}:2:3?shape={shape[0]}x{shape[1]}x{shape[2]}")
    seeds = [3 * PHANTOM_SEED_STRIDE, 3 * PHANTOM_SEED_STRIDE + 1]
    assert [c.case_id for c in cases] == [f"{kind}-{s}" for s in seeds]
    for case, seed in zip(cases, seeds):
        assert case.is_labeled
        expected = phantoms.make_case(kind, seed, shape=shape)
        assert case.modalities == list(expected["images"])
        for name, image in expected["images"].items():
            assert sitk.GetArrayViewFromImage(case.images[name]).shape == shape
            assert_same_image(case.images[name], image)
        assert_same_image(case.label, expected["label"])
    assert load_cases(f"phantom:{kind}:1?shape=12x24x24")[0].case_id == f"{kind}-0"


# --------------------------------------------------------------------------- guards


def test_valid_cases_pass_validation() -> None:
    cases = [make_case("a", 0), make_case("b", 1, labeled=False)]
    validate_training_cases(cases, ["t1", "flair"], require_label=False, label_values=[1, 2])
    validate_training_cases(cases[:1], ["t1", "flair"], require_label=True, reference="flair")


@pytest.mark.parametrize("problem, message", [
    ("no cases", "There are no cases to train on"),
    ("missing modality", r"Case 'a' \(test\) has no flair image; the model needs t1, flair"),
    ("unknown modality", r"has the modality adc, which the model does not know"),
    ("no label", r"Case 'a' \(test\) has no label map; supervised training needs one"),
    ("empty label", r"The label of case 'a' \(test\) is empty \(no foreground voxel\)"),
    ("label size", r"does not lie on the grid of its 't1' image \(size \(10, 12, 9\) instead of \(10, 12, 8\)\)"),
    ("label spacing", r"does not lie on the grid .*spacing \(0.8, 0.9, 3.0\) instead of \(0.8, 0.9, 1.5\)"),
    ("label origin", r"does not lie on the grid .*origin"),
    ("label direction", r"does not lie on the grid .*direction"),
    ("stray value", r"holds the value\(s\) \[7\], which the model does not have"),
    ("fractional label", r"holds non-integer values"),
])
def test_validation_errors(problem: str, message: str) -> None:
    case = make_case("a", 0)
    label_array = sitk.GetArrayFromImage(case.label)
    require_label = True
    if problem == "no cases":
        cases: list[Case] = []
    else:
        cases = [case]
    if problem == "missing modality":
        del case.images["flair"]
    elif problem == "unknown modality":
        case.images["adc"] = case.images["t1"]
    elif problem == "no label":
        case.label = None
    elif problem == "empty label":
        case.label = make_image(np.zeros(SHAPE, np.uint8))
        require_label = False
    elif problem == "label size":
        case.label = make_image(np.ones((9, 12, 10), np.uint8))
    elif problem == "label spacing":
        case.label = make_image(label_array, spacing=(0.8, 0.9, 3.0))
    elif problem == "label origin":
        case.label = make_image(label_array, origin=(-3.0, 4.0, 12.0))
    elif problem == "label direction":
        case.label.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    elif problem == "stray value":
        label_array[0, 0, 0] = 7
        case.label = make_image(label_array)
    elif problem == "fractional label":
        case.label = make_image(label_array.astype(np.float32) * 0.5)
    with pytest.raises(MultiModalSegError, match=message):
        validate_training_cases(cases, ["t1", "flair"], require_label=require_label, label_values=[1, 2])


def test_a_small_header_rounding_is_not_a_geometry_mismatch() -> None:
    case = make_case("a", 0)
    case.label.SetOrigin(tuple(v + 1e-6 for v in case.label.GetOrigin()))
    validate_training_cases([case], ["t1", "flair"], require_label=True)


def test_writers_refuse_ids_that_are_not_file_names(tmp_path: Path) -> None:
    with pytest.raises(MultiModalSegError, match="cannot be a file name"):
        write_cases_nnunet([make_case("../escape", 0)], tmp_path / "ds", "ds")
    with pytest.raises(MultiModalSegError, match="appears twice"):
        write_cases_json([make_case("a", 0), make_case("a", 1)], tmp_path / "c.json")


def test_datasets_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, MultiModalSegLib.datasets; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"


def test_phantom_spec_passes_the_appearance() -> None:
    standard = load_cases("phantom:liver-ct2:1:7?shape=12x24x24")[0]
    shifted = load_cases("phantom:liver-ct2:1:7:shifted?shape=12x24x24")[0]
    assert standard.case_id == shifted.case_id == f"liver-ct2-{7 * PHANTOM_SEED_STRIDE}"
    assert not np.array_equal(sitk.GetArrayViewFromImage(standard.images["venous"]),
                              sitk.GetArrayViewFromImage(shifted.images["venous"]))
