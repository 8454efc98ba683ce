"""``mmseg predict --case FOLDER``: each modality's file picked by the manifest's patterns, or a sentence why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_packages import tiny_maml_manifest, write_small_ct

from MultiModalSegLib.case_folder import candidate_inputs, match_case_folder
from MultiModalSegLib.cli import main
from MultiModalSegLib.errors import MultiModalSegError

BRAIN = {"id": "brain", "supports_missing_modalities": True, "modalities": [
    {"name": "t1", "patterns": ["*t1*", "*t1n*"]}, {"name": "t1ce", "patterns": ["*t1ce*", "*t1c*"]},
    {"name": "t2", "patterns": ["*t2*", "*t2w*"]}, {"name": "flair", "patterns": ["*flair*", "*t2f*"]}]}


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name.endswith("/"):
            (folder / name).mkdir()
        else:
            (folder / name).write_bytes(b"")
    return folder


def picked(match) -> dict[str, str]:
    return {name: path.name for name, path in match.inputs.items()}


def test_the_more_specific_pattern_wins_and_labels_and_other_files_are_left_out(tmp_path):
    folder = touch(tmp_path / "BraTS-0001", "BraTS-0001-t1n.nii.gz", "BraTS-0001-t1c.nii.gz",
                   "BraTS-0001-t2w.nii.gz", "BraTS-0001-t2f.nii.gz", "BraTS-0001-seg.nii.gz", "notes.txt")
    match = match_case_folder(folder, BRAIN)
    assert picked(match) == {"t1": "BraTS-0001-t1n.nii.gz", "t1ce": "BraTS-0001-t1c.nii.gz",
                             "t2": "BraTS-0001-t2w.nii.gz", "flair": "BraTS-0001-t2f.nii.gz"}
    assert match.unused == [] and match.missing == []
    assert [p.name for p in candidate_inputs(folder)] == sorted(
        ["BraTS-0001-t1n.nii.gz", "BraTS-0001-t1c.nii.gz", "BraTS-0001-t2w.nii.gz", "BraTS-0001-t2f.nii.gz"])


def test_the_case_name_in_every_file_name_does_not_match_every_modality(tmp_path):
    """A case called ``art_07`` must not make every file an arterial candidate: its one venous image is venous."""
    folder = touch(tmp_path / "art_07", "art_07_ven.nrrd")
    match = match_case_folder(folder, tiny_maml_manifest(), allow_missing=True)
    assert picked(match) == {"venous": "art_07_ven.nrrd"} and match.missing == ["arterial"]
    folder = touch(tmp_path / "ven-02", "ven-02-arterial.nii.gz", "ven-02-portal.nii.gz")
    assert picked(match_case_folder(folder, {**tiny_maml_manifest(), "modalities": [
        {"name": "arterial", "patterns": ["*art*"]}, {"name": "venous", "patterns": ["*ven*", "*portal*"]}]})) == {
        "arterial": "ven-02-arterial.nii.gz", "venous": "ven-02-portal.nii.gz"}


def test_dicom_series_folders_are_candidates(tmp_path):
    folder = touch(tmp_path / "study", "ARTERIAL/", "PORTAL_VENOUS/")
    match = match_case_folder(folder, tiny_maml_manifest())
    assert picked(match) == {"arterial": "ARTERIAL", "venous": "PORTAL_VENOUS"}


def test_two_files_for_one_modality_are_refused_with_both_names(tmp_path):
    folder = touch(tmp_path / "case", "scan_art_early.nii.gz", "scan_art_late.nii.gz", "scan_ven.nii.gz")
    with pytest.raises(MultiModalSegError) as error:
        match_case_folder(folder, tiny_maml_manifest())
    message = str(error.value)
    assert "scan_art_early.nii.gz and scan_art_late.nii.gz" in message and "'arterial'" in message
    assert "--input arterial=" in message and message.endswith(".")


def test_no_file_for_a_modality_is_refused_unless_missing_is_allowed_for_maml(tmp_path):
    folder = touch(tmp_path / "case", "scan_ven.nii.gz", "scan_t1.nii.gz")
    with pytest.raises(MultiModalSegError) as error:
        match_case_folder(folder, tiny_maml_manifest())
    message = str(error.value)
    assert "No image" in message and "'arterial'" in message and "*art*" in message
    assert "scan_t1.nii.gz" in message and "--allow-missing" in message
    match = match_case_folder(folder, tiny_maml_manifest(), allow_missing=True)
    assert picked(match) == {"venous": "scan_ven.nii.gz"} and match.missing == ["arterial"]
    assert [p.name for p in match.unused] == ["scan_t1.nii.gz"]
    strict = {**tiny_maml_manifest(), "supports_missing_modalities": False}
    with pytest.raises(MultiModalSegError, match="needs every modality"):
        match_case_folder(folder, strict, allow_missing=True)


# ---------------------------------------------------------------------------------------------- the CLI




def run(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_predict_case_says_which_file_went_where_and_segments(tiny_maml_package, tmp_path, capsys):
    folder = tmp_path / "PAT01"
    write_small_ct(folder / "CT_arterial_phase.nii.gz", 1)
    write_small_ct(folder / "CT_portal_VEN.nrrd", 2)
    write_small_ct(folder / "PAT01_seg.nii.gz", 3)
    code, lines = run(capsys, "predict", "--model", str(tiny_maml_package.folder), "--case", str(folder),
                      "--output", str(tmp_path / "out"), "--device", "cpu")
    assert code == 0
    inputs = next(line for line in lines if line["event"] == "inputs")
    assert inputs["inputs"] == {"arterial": "CT_arterial_phase.nii.gz", "venous": "CT_portal_VEN.nrrd"}
    assert lines[-1]["event"] == "result" and lines[-1]["available"] == ["arterial", "venous"]
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert Path(record["inputs"]["venous"]).name == "CT_portal_VEN.nrrd"


@pytest.mark.parametrize("files, message", [
    (("a_art.nii.gz", "b_art.nii.gz", "c_ven.nii.gz"), "a_art.nii.gz and b_art.nii.gz both match"),
    (("a_ven.nii.gz", "b_t1.nii.gz"), "No image"),
])
def test_predict_case_refuses_two_matches_or_none_with_a_sentence(tiny_maml_package, tmp_path, capsys, files,
                                                                  message):
    folder = tmp_path / "case"
    for seed, name in enumerate(files):
        write_small_ct(folder / name, seed)
    code, lines = run(capsys, "predict", "--model", str(tiny_maml_package.folder), "--case", str(folder),
                      "--output", str(tmp_path / "out"), "--device", "cpu")
    assert code == 2 and lines[-1]["event"] == "error"
    assert message in lines[-1]["message"] and lines[-1]["message"].endswith(".")
    assert not (tmp_path / "out").exists()


def test_predict_case_with_allow_missing_segments_without_the_unmatched_modality(tiny_maml_package, tmp_path, capsys):
    folder = tmp_path / "case"
    write_small_ct(folder / "a_ven.nii.gz", 1)
    code, lines = run(capsys, "predict", "--model", str(tiny_maml_package.folder), "--case", str(folder),
                      "--allow-missing", "--output", str(tmp_path / "out"), "--device", "cpu")
    assert code == 0
    assert next(line for line in lines if line["event"] == "inputs")["missing"] == ["arterial"]
    assert lines[-1]["available"] == ["venous"]


def test_input_case_and_data_exclude_each_other(tiny_maml_package, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", str(tiny_maml_package.folder), "--case", str(tmp_path), "--data", str(tmp_path),
              "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
