"""Label names come from the data set's description, never from the label values (issue 11, item 3).

``describe_labels`` once named any label set within {1, 2, 4} necrosis / edema / enhancing, so a
liver data set given as a JSON list trained a model whose labels and output files said
``necrosis`` and ``edema``. Names now come from dataset.json, a BraTS layout (its sequence names
tell), a ``labels`` entry of a JSON case list, or are ``label_<value>``. Real files throughout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import write_ct
from test_training_support import SHAPE

from MultiModalSegLib import cli
from MultiModalSegLib.datasets import load_cases, write_cases_json, write_cases_nnunet
from MultiModalSegLib.imageio import write_image
from MultiModalSegLib.training.data import describe_labels
from MultiModalSegLib.weights import load_model_package

LIVER = f"phantom:liver-ct2:2:0?shape={SHAPE}"  # labels 1 liver, 2 tumour
BRAIN = f"phantom:brain-mr4:1:0?shape={SHAPE}"  # BraTS labels 1, 2, 4


def liver_json_list(folder: Path, labels: object = None) -> Path:
    """The phantom liver cases as files and a JSON case list (optionally with a ``labels`` entry)."""
    path = write_cases_json(load_cases(LIVER), folder / "cases.json")
    if labels is not None:
        path.write_text(json.dumps({"labels": labels, "cases": json.loads(path.read_text())}))
    return path


def brats_folder(folder: Path, sequences: dict[str, str]) -> Path:
    """A BraTS-layout folder (CASE/CASE_<sequence>.nii.gz, CASE_seg.nii.gz) of one brain phantom."""
    case = load_cases(BRAIN)[0]
    for ours, theirs in sequences.items():
        write_image(case.images[ours], folder / "BraTS_001" / f"BraTS_001_{theirs}.nii.gz")
    write_image(case.label, folder / "BraTS_001" / "BraTS_001_seg.nii.gz")
    return folder


def test_a_json_list_without_names_gets_label_n_not_brats_names(tmp_path):
    spec = str(liver_json_list(tmp_path))
    assert describe_labels(spec, [1, 2]).names == ["label_1", "label_2"]


@pytest.mark.parametrize("labels", [{"liver": 1, "tumor": 2}, {"0": "background", "1": "liver", "2": "tumor"},
                                    {"background": 0, "liver": 1, "tumor": 2}])
def test_a_json_list_names_its_labels(tmp_path, labels):
    spec = str(liver_json_list(tmp_path, labels))
    assert len(load_cases(spec)) == 2  # the cases still load from {"labels": ..., "cases": [...]}
    assert describe_labels(spec, [1, 2]).names == ["liver", "tumor"]


def test_a_json_list_naming_a_value_the_data_lack_and_missing_one(tmp_path):
    spec = str(liver_json_list(tmp_path, {"liver": 1, "vessel": 7}))
    assert describe_labels(spec, [1, 2]).names == ["liver", "label_2"]


def test_a_json_list_with_unreadable_labels_is_refused(tmp_path):
    spec = str(liver_json_list(tmp_path, ["liver", "tumor"]))
    from MultiModalSegLib.errors import MultiModalSegError

    with pytest.raises(MultiModalSegError, match="labels"):
        describe_labels(spec, [1, 2])


@pytest.mark.parametrize("sequences, values, names", [
    ({"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}, [1, 2, 4],
     ["necrotic_core", "edema", "enhancing_tumor"]),
    ({"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}, [1, 2, 3],  # BraTS 2023 names and values
     ["necrotic_core", "edema", "enhancing_tumor"]),
])
def test_a_brats_layout_names_the_tumour_regions(tmp_path, sequences, values, names):
    assert describe_labels(str(brats_folder(tmp_path, sequences)), values).names == names


def test_a_case_folder_layout_that_is_not_brats_gets_label_n(tmp_path):
    for case in load_cases(LIVER):
        for name, image in case.images.items():
            write_image(image, tmp_path / case.case_id / f"{case.case_id}_{name}.nii.gz")
        write_image(case.label, tmp_path / case.case_id / f"{case.case_id}_seg.nii.gz")
    assert describe_labels(str(tmp_path), [1, 2]).names == ["label_1", "label_2"]


def test_an_nnunet_dataset_json_names_its_labels(tmp_path):
    write_cases_nnunet(load_cases(LIVER), tmp_path / "Dataset001_Liver", "liver", {"liver": 1, "tumor": 2})
    assert describe_labels(str(tmp_path / "Dataset001_Liver"), [1, 2]).names == ["liver", "tumor"]


@pytest.mark.slow
def test_a_model_trained_on_a_json_liver_list_names_its_outputs_label_n(tmp_path, capsys):
    """The issue's run: a JSON-list liver data set, train, predict; no file may say necrosis or edema."""
    spec = liver_json_list(tmp_path / "data")
    output = tmp_path / "run"
    code = cli.main(["train", "--method", "maml", "--data", str(spec), "--output", str(output), "--iterations", "1",
                     "--patch", "16x32x32", "--batch", "2", "--base-filters", "2", "--depth", "3",
                     "--validation-cases", "0", "--checkpoint-every", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().out
    package = load_model_package(output / "last")
    assert [label["name"] for label in package.labels] == ["label_1", "label_2"]
    image = write_ct(tmp_path / "case_venous.nii.gz", shape=(16, 32, 32))
    arterial = write_ct(tmp_path / "case_arterial.nii.gz", shape=(16, 32, 32), seed=1)
    code = cli.main(["predict", "--model", str(output / "last"), "--input", f"venous={image}",
                     "--input", f"arterial={arterial}", "--output", str(tmp_path / "prediction"), "--device", "cpu"])
    assert code == 0, capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "prediction").iterdir())
    assert "probability_label_1.nii.gz" in written and "probability_label_2.nii.gz" in written
    assert not any("necrosis" in name or "edema" in name for name in written)
