"""``mmseg predict --data``: whole data sets in one call, failures per case, reruns that skip finished cases.

Real files (SimpleITK), a real (tiny, untrained) MAML package and the real CLI entry point.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from tiny_packages import write_small_ct

from MultiModalSegLib.cli import main

EXIT_CASES_FAILED = 3




def corrupt(path: Path) -> None:
    """Cut a compressed NIfTI file in half, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def nnunet_folder(root: Path) -> Path:
    """An nnU-Net raw folder with three test cases in imagesTs; the venous image of case_b is corrupt."""
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "arterial", "1": "venous"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "file_ending": ".nii.gz"}))
    for index, case in enumerate(("case_a", "case_b", "case_c")):
        write_small_ct(root / "imagesTs" / f"{case}_0000.nii.gz", 2 * index)
        write_small_ct(root / "imagesTs" / f"{case}_0001.nii.gz", 2 * index + 1)
    corrupt(root / "imagesTs" / "case_b_0001.nii.gz")
    return root


def brats_folder(root: Path) -> Path:
    """A folder of case folders: BraTS names (with a label map beside), free names matched by the manifest's
    patterns, and a case whose arterial file is corrupt."""
    write_small_ct(root / "P01" / "P01_arterial.nii.gz", 1)
    write_small_ct(root / "P01" / "P01_venous.nii.gz", 2)
    write_small_ct(root / "P01" / "P01_seg.nii.gz", 3)
    write_small_ct(root / "P02" / "ART_phase.nii.gz", 4)
    write_small_ct(root / "P02" / "portal_VEN.nrrd", 5)
    write_small_ct(root / "P03" / "P03_arterial.nii.gz", 6)
    write_small_ct(root / "P03" / "P03_venous.nii.gz", 7)
    corrupt(root / "P03" / "P03_arterial.nii.gz")
    (root / "notes").mkdir()  # a folder without images is not a case
    (root / "notes" / "readme.txt").write_text("not a case")
    return root


def run(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def read_summary(output: Path) -> tuple[dict, list[dict]]:
    summary = json.loads((output / "summary.json").read_text())
    with open(output / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return summary, rows


@pytest.mark.parametrize("layout", ["nnunet", "brats"])
def test_a_data_set_in_one_call_reports_the_corrupt_case_and_segments_the_others(tiny_maml_package, tmp_path, capsys,
                                                                                   layout):
    if layout == "nnunet":
        data, bad, good = str(nnunet_folder(tmp_path / "Dataset001_Liver") / "imagesTs"), "case_b", ["case_a", "case_c"]
    else:
        data, bad, good = str(brats_folder(tmp_path / "cases")), "P03", ["P01", "P02"]
    output = tmp_path / "predictions"
    code, lines = run(capsys, "predict", "--model", str(tiny_maml_package.folder), "--data", data,
                      "--output", str(output), "--device", "cpu")
    assert code == EXIT_CASES_FAILED
    assert lines[0]["event"] == "started" and lines[0]["cases"] == 3
    result = lines[-1]
    assert result["event"] == "result" and result["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert [failure["case"] for failure in result["failed"]] == [bad]
    assert "corrupt" in result["failed"][0]["error"] or "incomplete" in result["failed"][0]["error"]
    case_events = [line for line in lines if line["event"] == "case"]
    assert [line["case"] for line in case_events] == sorted(good + [bad])

    summary, rows = read_summary(output)
    assert {row["case"]: row["status"] for row in rows} == {**{case: "done" for case in good}, bad: "failed"}
    for row in rows:
        if row["status"] == "done":
            assert float(row["seconds"]) > 0
            assert row["volume_ml_liver"] != "" and row["volume_ml_tumor"] != "" and row["error"] == ""
        else:
            assert row["error"].endswith(".") and row["volume_ml_liver"] == ""
    for case in good:
        folder = output / case
        record = json.loads((folder / "result.json").read_text())
        assert all((folder / name).is_file() for name in record["files"])
        assert set(record["inputs"]) == {"arterial", "venous"}
        # the label volumes of the summary are those of the written label map
        labelmap = sitk.ReadImage(str(folder / "labelmap.nii.gz"))
        voxel_ml = np.prod(labelmap.GetSpacing()) / 1000
        tumor = float((sitk.GetArrayFromImage(labelmap) == 2).sum() * voxel_ml)
        entry = next(item for item in summary["cases"] if item["case"] == case)
        assert entry["volumes_ml"]["tumor"] == pytest.approx(tumor, abs=1e-3)
    assert not (output / bad / "result.json").exists()
    if layout == "brats":
        matching = {item["case"]: item["matching"] for item in summary["cases"]}
        assert matching == {"P01": "file names", "P02": "name patterns", "P03": "file names"}
        p02 = next(item for item in summary["cases"] if item["case"] == "P02")
        assert Path(p02["inputs"]["arterial"]).name == "ART_phase.nii.gz"
        assert Path(p02["inputs"]["venous"]).name == "portal_VEN.nrrd"


def test_a_rerun_skips_finished_cases_retries_failed_ones_and_overwrite_redoes_all(tiny_maml_package, tmp_path,
                                                                                    capsys):
    data = nnunet_folder(tmp_path / "Dataset001_Liver")
    output = tmp_path / "predictions"
    argv = ["predict", "--model", str(tiny_maml_package.folder), "--data", f"{data}:test", "--output", str(output),
            "--device", "cpu"]
    assert run(capsys, *argv)[0] == EXIT_CASES_FAILED
    finished = {case: (output / case / "result.json").stat().st_mtime_ns for case in ("case_a", "case_c")}
    first_volumes = {row["case"]: row["volume_ml_tumor"] for row in read_summary(output)[1]}

    write_small_ct(data / "imagesTs" / "case_b_0001.nii.gz", 3)  # the user fixes the corrupt file
    code, lines = run(capsys, *argv)
    assert code == 0
    assert lines[-1]["counts"] == {"done": 1, "skipped": 2, "failed": 0}
    assert [line["case"] for line in lines if line["event"] == "progress" and line["stage"] == "inference"] \
        and {line["case"] for line in lines if line.get("stage") == "inference"} == {"case_b"}
    assert {case: (output / case / "result.json").stat().st_mtime_ns for case in finished} == finished
    summary, rows = read_summary(output)
    assert {row["case"]: row["status"] for row in rows} == {"case_a": "skipped", "case_b": "done",
                                                            "case_c": "skipped"}
    assert all(rows[i]["volume_ml_tumor"] == first_volumes[rows[i]["case"]] for i in (0, 2))

    # an interrupted case (result.json lists a file that is not there) is not finished
    (output / "case_c" / "uncertainty.nii.gz").unlink()
    code, lines = run(capsys, *argv)
    assert code == 0 and lines[-1]["counts"] == {"done": 1, "skipped": 2, "failed": 0}
    assert (output / "case_c" / "uncertainty.nii.gz").is_file()

    code, lines = run(capsys, *argv, "--overwrite")
    assert code == 0 and lines[-1]["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert all((output / case / "result.json").stat().st_mtime_ns != stamp for case, stamp in finished.items())


def test_a_finished_case_of_another_model_is_not_taken_for_this_ones(tiny_maml_package, tmp_path, capsys):
    data = nnunet_folder(tmp_path / "Dataset001_Liver")
    output = tmp_path / "predictions"
    argv = ["predict", "--model", str(tiny_maml_package.folder), "--data", f"{data}:test", "--output", str(output),
            "--device", "cpu"]
    run(capsys, *argv)
    record = json.loads((output / "case_a" / "result.json").read_text())
    record["model"]["id"] = "another-model"
    (output / "case_a" / "result.json").write_text(json.dumps(record))
    code, lines = run(capsys, *argv)
    assert code == EXIT_CASES_FAILED
    failure = next(item for item in lines[-1]["failed"] if item["case"] == "case_a")
    assert "another-model" in failure["error"] and "--overwrite" in failure["error"]


def test_missing_modalities_fail_their_case_unless_allowed_for_maml(tiny_maml_package, tmp_path, capsys):
    root = tmp_path / "cases"
    write_small_ct(root / "P01" / "P01_arterial.nii.gz", 1)
    write_small_ct(root / "P01" / "P01_venous.nii.gz", 2)
    write_small_ct(root / "P02" / "P02_venous.nii.gz", 3)
    argv = ["predict", "--model", str(tiny_maml_package.folder), "--data", str(root), "--device", "cpu"]
    code, lines = run(capsys, *argv, "--output", str(tmp_path / "strict"))
    assert code == EXIT_CASES_FAILED
    assert [item["case"] for item in lines[-1]["failed"]] == ["P02"]
    assert "arterial" in lines[-1]["failed"][0]["error"] and "--allow-missing" in lines[-1]["failed"][0]["error"]
    code, lines = run(capsys, *argv, "--output", str(tmp_path / "lenient"), "--allow-missing")
    assert code == 0 and lines[-1]["counts"]["done"] == 2
    record = json.loads((tmp_path / "lenient" / "P02" / "result.json").read_text())
    assert record["available"] == ["venous"]


@pytest.mark.parametrize("where, message", [("inside_data", "inside the data folder"),
                                            ("busy", "not empty"),
                                            ("phantom", "write the phantoms")])
def test_refusals_before_anything_runs_are_user_errors(tiny_maml_package, tmp_path, capsys, where, message):
    data = brats_folder(tmp_path / "cases")
    output = tmp_path / "out"
    if where == "inside_data":
        output = data / "predictions"
    elif where == "busy":
        output.mkdir()
        (output / "keep.txt").write_text("user data")
    spec = "phantom:liver-ct2:2" if where == "phantom" else str(data)
    code, lines = run(capsys, "predict", "--model", str(tiny_maml_package.folder), "--data", spec,
                      "--output", str(output), "--device", "cpu")
    assert code == 2 and lines[-1]["event"] == "error" and message in lines[-1]["message"]
    if where == "busy":
        assert (output / "keep.txt").read_text() == "user data" and len(list(output.iterdir())) == 1


def test_prefetching_the_next_case_changes_no_result(tiny_maml_package, tmp_path):
    from MultiModalSegLib.batch_predict import BatchOptions, predict_data_set
    from MultiModalSegLib.progress import ProgressReporter

    data = brats_folder(tmp_path / "cases")
    write_small_ct(data / "P03" / "P03_arterial.nii.gz", 6)  # all three cases readable
    maps = {}
    for prefetch in (False, True):
        output = tmp_path / f"prefetch-{prefetch}"
        summary = predict_data_set(tiny_maml_package.folder, str(data), output,
                                   BatchOptions(device="cpu", prefetch=prefetch), ProgressReporter(quiet=True))
        assert summary["counts"]["done"] == 3
        maps[prefetch] = [sitk.GetArrayFromImage(sitk.ReadImage(str(output / case / "labelmap.nii.gz")))
                          for case in ("P01", "P02", "P03")]
    for without, with_prefetch in zip(maps[False], maps[True]):
        np.testing.assert_array_equal(without, with_prefetch)


def test_a_finished_case_whose_label_map_was_damaged_fails_alone_with_a_sentence(tiny_maml_package, tmp_path,
                                                                                  capsys):
    data = nnunet_folder(tmp_path / "Dataset001_Liver")
    write_small_ct(data / "imagesTs" / "case_b_0001.nii.gz", 3)
    output = tmp_path / "predictions"
    argv = ["predict", "--model", str(tiny_maml_package.folder), "--data", f"{data}:test", "--output", str(output),
            "--device", "cpu"]
    assert run(capsys, *argv)[0] == 0
    corrupt(output / "case_a" / "labelmap.nii.gz")
    code, lines = run(capsys, *argv)
    assert code == EXIT_CASES_FAILED
    assert lines[-1]["counts"] == {"done": 0, "skipped": 2, "failed": 1}
    assert "cannot be read" in lines[-1]["failed"][0]["error"] and "--overwrite" in lines[-1]["failed"][0]["error"]


def test_sigterm_stops_a_batch_at_the_next_window_and_the_rerun_goes_on(tmp_path):
    """A real ``python -m MultiModalSegLib predict --data`` process and a real SIGTERM while case_b runs.

    Before cancellation existed here, SIGTERM killed the process (exit -15, no event) and the summary
    did not say the run stopped. Now: exit 143, one ``cancelled`` event naming the case, case_a
    finished, case_b and case_c with no result, the summary marked cancelled; the same command
    later segments only what is left.
    """
    import signal
    import subprocess

    from test_predict_interruption import start_and_signal_at
    from test_training_support import PYTHON, REPO, subprocess_env
    from tiny_packages import make_tiny_maml, tiny_maml_manifest

    from MultiModalSegLib.weights import save_model_package

    package = save_model_package(make_tiny_maml(), {**tiny_maml_manifest(), "patch_size": [8, 16, 16]},
                                 tmp_path / "model").folder
    data = tmp_path / "cases"
    for index, case in enumerate(("case_a", "case_b", "case_c")):  # 16x48x48: dozens of windows a case
        write_small_ct(data / case / f"{case}_arterial.nii.gz", 2 * index, shape=(16, 48, 48))
        write_small_ct(data / case / f"{case}_venous.nii.gz", 2 * index + 1, shape=(16, 48, 48))
    output = tmp_path / "predictions"
    command = [PYTHON, "-m", "MultiModalSegLib", "predict", "--model", str(package), "--data", str(data),
               "--output", str(output), "--device", "cpu", "--json"]

    def in_case_b(event: dict) -> bool:
        return event.get("event") == "progress" and event.get("stage") == "inference" and event.get("case") == "case_b"

    code, events = start_and_signal_at(command, in_case_b, signal.SIGTERM)
    assert code == 143, events[-3:]
    cancelled = [event for event in events if event["event"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["case"] == "case_b" and cancelled[0]["exit_code"] == 143
    assert "cancelled by SIGTERM at case case_b" in cancelled[0]["message"]
    assert not any(event["event"] == "result" for event in events)
    assert (output / "case_a" / "result.json").is_file()
    assert not (output / "case_b").exists() and not (output / "case_c").exists()
    summary, rows = read_summary(output)
    assert [row["case"] for row in rows] == ["case_a"] and summary["cancelled"]["case"] == "case_b"

    rerun = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = json.loads(rerun.stdout.splitlines()[-1])
    assert result["counts"] == {"done": 2, "skipped": 1, "failed": 0}
    summary, rows = read_summary(output)
    assert "cancelled" not in summary and [row["status"] for row in rows] == ["skipped", "done", "done"]
