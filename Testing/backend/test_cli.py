"""The ``mmseg`` CLI: JSON-line events, outputs, and a sentence plus exit code 2 on bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from tiny_packages import make_threshold_dtc, threshold_dtc_manifest

from MultiModalSegLib.cli import main

REPOSITORY = Path(__file__).resolve().parents[2]


def write_ct(path: Path, shape=(8, 20, 20), seed=0, origin=(0.0, 0.0, 0.0), array=None) -> Path:
    if array is None:
        array = np.random.default_rng(seed).normal(50, 20, size=shape).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 4.0))
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def phases(tmp_path):
    return {"arterial": write_ct(tmp_path / "case_art.nii.gz", seed=1),
            "venous": write_ct(tmp_path / "case_ven.nrrd", seed=2)}


def run_cli(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    return code, events(capsys.readouterr().out)


def test_predict_writes_outputs_and_reports_progress(tiny_maml_package, phases, tmp_path, capsys):
    before = {name: digest(path) for name, path in phases.items()}
    code, lines = run_cli(capsys, "predict", "--model", str(tiny_maml_package.folder),
                          "--input", f"arterial={phases['arterial']}", "--input", f"venous={phases['venous']}",
                          "--output", str(tmp_path / "out"), "--device", "cpu")
    assert code == 0
    kinds = [line["event"] for line in lines]
    assert kinds[0] == "started" and kinds[-1] == "result"
    inference = [line for line in lines if line.get("stage") == "inference"]
    assert inference and inference[-1]["done"] == inference[-1]["total"]
    result = lines[-1]
    for name in result["files"]:
        assert (tmp_path / "out" / name).is_file()
    assert {name: digest(path) for name, path in phases.items()} == before, "inputs must never change"


@pytest.mark.parametrize("case, message", [
    ("unknown_modality", "no modality named portal"),
    ("no_input", "No input"),
    ("not_name_path", "NAME=PATH"),
    ("non_overlapping", "overlap"),
    ("image_2d", "2D"),
    ("image_4d", "4D"),
    ("nan_voxels", "NaN"),
    ("inf_nifti", "120 voxels that are NaN or infinite"),
    ("missing_file", "does not exist"),
    ("corrupt_weights", "corrupt"),
    ("unknown_model", "No model package"),
])
def test_bad_input_gives_an_error_event_and_exit_code_2(tiny_maml_package, phases, tmp_path, capsys, case, message):
    venous = phases["venous"]
    model = str(tiny_maml_package.folder)
    inputs = [f"venous={venous}"]
    if case == "unknown_modality":
        inputs = [f"portal={venous}"]
    elif case == "no_input":
        inputs = []
    elif case == "not_name_path":
        inputs = [str(venous)]
    elif case == "non_overlapping":
        inputs.append(f"arterial={write_ct(tmp_path / 'far.nii.gz', origin=(9000.0, 0.0, 0.0))}")
    elif case == "image_2d":
        inputs = [f"venous={write_ct(tmp_path / 'slice.nii.gz', array=np.zeros((20, 20), np.int16))}"]
    elif case == "image_4d":
        image = sitk.JoinSeries([sitk.ReadImage(str(venous))] * 2)
        sitk.WriteImage(image, str(tmp_path / "four.nii.gz"))
        inputs = [f"venous={tmp_path / 'four.nii.gz'}"]
    elif case == "nan_voxels":
        array = np.ones((8, 20, 20), np.float32)
        array[1, 2, 3] = np.nan
        # NRRD keeps NaN as read (ITK's NIfTI reader turns it into 0; see the inf_nifti case)
        inputs = [f"venous={write_ct(tmp_path / 'nan.nrrd', array=array)}"]
    elif case == "inf_nifti":  # ITK's NIfTI reader reads Inf as 0: once exit 0 and a segmented "liver"
        inputs = [f"venous={write_ct(tmp_path / 'inf.nii.gz', array=np.full((4, 5, 6), np.inf, np.float32))}"]
    elif case == "missing_file":
        inputs = [f"venous={tmp_path / 'nowhere.nii.gz'}"]
    elif case == "corrupt_weights":
        weights = tiny_maml_package.weights_path
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    elif case == "unknown_model":
        model = "no-such-model"
    argv = ["predict", "--model", model, "--output", str(tmp_path / "out"), "--device", "cpu"]
    for item in inputs:
        argv += ["--input", item]
    code, lines = run_cli(capsys, *argv)
    assert code == 2
    assert lines[-1]["event"] == "error"
    assert message.lower() in lines[-1]["message"].lower()
    assert lines[-1]["message"].endswith(".")


def test_predict_refuses_a_non_empty_output_folder_and_one_holding_the_inputs(tiny_maml_package, phases, tmp_path,
                                                                           capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user data")
    code, lines = run_cli(capsys, "predict", "--model", str(tiny_maml_package.folder),
                          "--input", f"venous={phases['venous']}", "--output", str(tmp_path / "busy"))
    assert code == 2 and "not empty" in lines[-1]["message"]
    assert (tmp_path / "busy" / "keep.txt").read_text() == "user data"
    code, lines = run_cli(capsys, "predict", "--model", str(tiny_maml_package.folder),
                          "--input", f"venous={phases['venous']}", "--output", str(tmp_path), "--overwrite")
    assert code == 2 and "contains the input" in lines[-1]["message"]


def test_models_lists_packages_as_json(tiny_maml_package, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(tiny_maml_package.folder.parent))
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))
    code, lines = run_cli(capsys, "models", "--json")
    assert code == 0
    assert [line["id"] for line in lines] == ["tiny-maml"]
    assert lines[0]["modalities"] == ["arterial", "venous"] and lines[0]["read_only"] is True


def test_the_module_entry_point_runs_in_a_real_process_without_importing_torch_for_help(tiny_maml_package, phases,
                                                                                       tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    probe = subprocess.run([sys.executable, "-c", "import sys; from MultiModalSegLib.cli import build_parser; "
                            "build_parser(); print('torch' in sys.modules, 'SimpleITK' in sys.modules)"],
                           capture_output=True, text=True, env=env, check=True)
    assert probe.stdout.split() == ["False", "False"]
    completed = subprocess.run([sys.executable, "-m", "MultiModalSegLib", "predict", "--model",
                                str(tiny_maml_package.folder), "--input", f"venous={phases['venous']}",
                                "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert completed.returncode == 0, completed.stderr
    lines = events(completed.stdout)
    assert lines[-1]["event"] == "result" and lines[-1]["available"] == ["venous"]


@pytest.fixture()
def two_blobs(tmp_path):
    """The hand-set threshold model and an image with a 5^3 cube and a separate 2^3 cube."""
    from MultiModalSegLib.weights import save_model_package

    package = save_model_package(make_threshold_dtc(), threshold_dtc_manifest(["mri"]), tmp_path / "threshold")
    array = np.zeros((16, 24, 20), dtype=np.float32)
    array[2:7, 3:8, 4:9] = 1.0  # 125 voxels
    array[11:13, 17:19, 14:16] = 1.0  # 8 voxels, far from the first
    return package, write_ct(tmp_path / "mri.nrrd", array=array), array


def labelmap_of(folder: Path) -> np.ndarray:
    result = json.loads((folder / "result.json").read_text())
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / result["outputs"]["labelmap"])))


def test_largest_component_through_the_command_line_drops_the_second_component(two_blobs, tmp_path, capsys):
    package, image, array = two_blobs
    code, _ = run_cli(capsys, "predict", "--model", str(package.folder), "--input", f"mri={image}",
                      "--output", str(tmp_path / "all"), "--device", "cpu")
    assert code == 0
    np.testing.assert_array_equal(labelmap_of(tmp_path / "all"), array.astype(np.uint8))  # both components
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-m", "MultiModalSegLib", "predict", "--model", str(package.folder),
                                "--input", f"mri={image}", "--output", str(tmp_path / "largest"), "--device", "cpu",
                                "--largest-component"], capture_output=True, text=True, env=env)
    assert completed.returncode == 0, completed.stderr
    assert events(completed.stdout)[-1]["event"] == "result"
    largest = np.zeros_like(array, dtype=np.uint8)
    largest[2:7, 3:8, 4:9] = 1
    np.testing.assert_array_equal(labelmap_of(tmp_path / "largest"), largest)


def test_overwrite_replaces_an_earlier_result_in_the_same_folder(two_blobs, tmp_path, capsys):
    package, image, array = two_blobs
    argv = ["predict", "--model", str(package.folder), "--input", f"mri={image}", "--output", str(tmp_path / "out"),
            "--device", "cpu"]
    assert run_cli(capsys, *argv)[0] == 0
    first = json.loads((tmp_path / "out" / "result.json").read_text())
    flipped = 1.0 - array  # the second case: everything but the two cubes
    write_ct(image, array=flipped)
    code, lines = run_cli(capsys, *argv, "--overwrite")
    assert code == 0 and lines[-1]["event"] == "result"
    second = json.loads((tmp_path / "out" / "result.json").read_text())
    assert sorted(second["files"]) == sorted(first["files"])
    assert all((tmp_path / "out" / name).is_file() for name in second["files"])
    np.testing.assert_array_equal(labelmap_of(tmp_path / "out"), flipped.astype(np.uint8))
    probability_file = tmp_path / "out" / second["outputs"]["probabilities"]["object"]
    probability = sitk.GetArrayFromImage(sitk.ReadImage(str(probability_file)))
    assert probability[0, 0, 0] > 0.99 and probability[3, 4, 5] < 0.01  # the new case's maps, not the old ones
