"""``finetune``: a package + labeled and unlabeled cases -> a new version in the user model store.

Real networks and packages (tiny, randomly initialised: fine-tuning needs no trained start to be
tested), real phantom cases and files, ``MMSEG_MODEL_STORE`` and ``MMSEG_BUNDLED_MODELS`` in tmp.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from test_training_support import PATCH, SHAPE, reporter_with_events

from MultiModalSegLib import model_store
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models import MAML, DTCVNet
from MultiModalSegLib.training.config import FinetuneConfig
from MultiModalSegLib.training.finetune import finetune
from MultiModalSegLib.weights import load_model_package, save_model_package

LABELED = f"phantom:liver-ct2:1:3?shape={SHAPE}"
UNLABELED = f"phantom:liver-ct2:2:4:shifted?shape={SHAPE}"


def liver_manifest() -> dict:
    return {"id": "tiny-liver", "version": 1, "method": "maml", "title": "tiny liver",
            "modalities": [{"name": "arterial", "patterns": ["*art*"], "normalization": "ct"},
                           {"name": "venous", "patterns": ["*ven*"], "normalization": "ct"}],
            "reference_modality": "venous",
            "labels": [{"value": 1, "name": "liver", "color": [0.8, 0.5, 0.4]},
                       {"value": 2, "name": "tumor", "color": [0.9, 0.2, 0.2]}],
            "preprocessing": {}, "patch_size": list(PATCH), "architecture": {}, "weights": {},
            "provenance": {"data": "phantom:liver-ct2"}}


def atrium_manifest() -> dict:
    return {"id": "tiny-atrium", "version": 1, "method": "dtc", "title": "tiny atrium",
            "modalities": [{"name": "mri", "patterns": ["*"], "normalization": "mr"}],
            "reference_modality": "mri",
            "labels": [{"value": 1, "name": "left_atrium", "color": [0.8, 0.3, 0.3]}],
            "preprocessing": {}, "patch_size": list(PATCH), "architecture": {}, "weights": {}, "provenance": {}}


@pytest.fixture()
def stores(tmp_path, monkeypatch) -> dict[str, Path]:
    store, bundled = tmp_path / "store", tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(store))
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(bundled))
    monkeypatch.setenv("MMSEG_ALLOW_BUNDLED_WRITE", "1")
    torch.manual_seed(0)
    save_model_package(MAML(["arterial", "venous"], 3, base_filters=4, num_stages=3, max_filters=16),
                       liver_manifest(), bundled / "tiny-liver")
    monkeypatch.delenv("MMSEG_ALLOW_BUNDLED_WRITE")
    return {"store": store, "bundled": bundled}


def tiny_finetune(**overrides) -> FinetuneConfig:
    config = FinetuneConfig(iterations=3, device="cpu", seed=5)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_maml_finetune_adds_versions_and_never_touches_the_source(stores, tmp_path):
    source = stores["bundled"] / "tiny-liver"
    before = snapshot(source)
    reporter, events = reporter_with_events()
    outcome = finetune("tiny-liver", LABELED, UNLABELED, tmp_path / "out1", tiny_finetune(),
                       reporter=reporter, command="mmseg finetune --model tiny-liver")
    assert (outcome.model_id, outcome.version) == ("tiny-liver", 2)
    assert outcome.folder == stores["store"] / "tiny-liver" / "v2"
    assert snapshot(source) == before

    progress = [p for p in events.of("progress") if p["stage"] == "finetune"]
    assert [p["iteration"] for p in progress] == [1, 2, 3]
    assert [p["stage"] for p in events.of("progress")][-1] == "saving"  # then the new version is written
    assert {"supervised", "consistency", "consistency_weight"} <= set(progress[-1]["losses"])
    assert progress[-1]["losses"]["consistency"] > 0  # the unlabeled cases took part

    package = load_model_package("tiny-liver")  # the id now resolves to the new current version
    assert package.version == 2
    provenance = package.manifest["provenance"]
    assert provenance["fine_tuned_from"]["version"] == 1
    assert provenance["fine_tuned_from"]["sha256"] == json.loads((source / "manifest.json").read_text())["weights"]["sha256"]
    assert provenance["cases"] == {"labeled": ["liver-ct2-300000"], "unlabeled": ["liver-ct2-400000", "liver-ct2-400001"]}
    assert package.modalities == ["arterial", "venous"] and package.patch_size == PATCH
    start = load_model_package(source).load_state_dict()
    tuned = package.load_state_dict()
    assert any(not torch.equal(start[k], tuned[k]) for k in start)
    result = json.loads((tmp_path / "out1" / "result.json").read_text())
    assert result["model"]["version"] == 2 and result["fine_tuned_from"]["version"] == 1

    # fine-tuning again starts from the current version (v2) and adds v3; rollback brings v2 back
    again = finetune("tiny-liver", LABELED, None, tmp_path / "out2", tiny_finetune(iterations=1))
    assert again.version == 3 and again.source["version"] == 2
    assert [(e["version"], e["current"]) for e in model_store.list_model_versions("tiny-liver")] == [
        (1, False), (2, False), (3, True)]
    model_store.rollback("tiny-liver", 2)
    assert load_model_package("tiny-liver").version == 2
    assert model_store.leftover_staging() == []


def test_dtc_finetune_from_a_package_folder_without_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))
    torch.manual_seed(0)
    source = save_model_package(DTCVNet(1, 1, base_filters=2), atrium_manifest(), tmp_path / "pkg").folder
    before = snapshot(source)
    reporter, events = reporter_with_events()
    labeled = f"phantom:atrium-mr:1:0?shape={SHAPE}"
    unlabeled = f"phantom:atrium-mr:2:1?shape={SHAPE}"
    outcome = finetune(source, labeled, unlabeled, tmp_path / "out", tiny_finetune(iterations=2),
                       reporter=reporter, write_to_store=False)
    assert outcome.folder == tmp_path / "out" / "model" and outcome.version == 2
    assert snapshot(source) == before
    assert not (tmp_path / "store").exists()
    assert {"dice", "sdf_mse", "consistency"} <= set(events.of("progress")[-2]["losses"])  # [-1]: saving
    assert load_model_package(outcome.folder).method == "dtc"


# -- guards ------------------------------------------------------------------------------------------------


def write_case_list(tmp_path: Path, name: str, edit=None, label: bool = True, rename: dict | None = None) -> str:
    """A one-case JSON list from a phantom, optionally edited (label, modality names)."""
    from MultiModalSegLib.datasets import load_cases

    case = load_cases(LABELED)[0]
    folder = tmp_path / name
    folder.mkdir()
    images = {}
    for modality, image in case.images.items():
        path = folder / f"{modality}.nii.gz"
        sitk.WriteImage(image, str(path))
        images[(rename or {}).get(modality, modality)] = path.name
    entry = {"id": name, "images": images}
    if label:
        label_image = edit(case.label) if edit else case.label
        sitk.WriteImage(label_image, str(folder / "label.nii.gz"))
        entry["label"] = "label.nii.gz"
    (folder / "cases.json").write_text(json.dumps([entry]))
    return str(folder / "cases.json")


def empty_label(label: sitk.Image) -> sitk.Image:
    empty = sitk.Image(label.GetSize(), label.GetPixelID())
    empty.CopyInformation(label)
    return empty


def shifted_label(label: sitk.Image) -> sitk.Image:
    moved = sitk.Image(label)
    moved.SetOrigin(tuple(o + 25.0 for o in label.GetOrigin()))
    return moved


def foreign_value(label: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(label)
    array[array == 2] = 7
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(label)
    return image


@pytest.mark.parametrize("kind, message", [
    ("empty", "is empty"),
    ("geometry", "does not lie on the grid"),
    ("values", "does not have"),
    ("unknown_modality", "does not know"),
    ("no_label", "has no label"),
])
def test_finetune_guards(stores, tmp_path, kind, message):
    spec = {
        "empty": lambda: write_case_list(tmp_path, "c", edit=empty_label),
        "geometry": lambda: write_case_list(tmp_path, "c", edit=shifted_label),
        "values": lambda: write_case_list(tmp_path, "c", edit=foreign_value),
        "unknown_modality": lambda: write_case_list(tmp_path, "c", rename={"arterial": "delayed"}),
        "no_label": lambda: write_case_list(tmp_path, "c", label=False),
    }[kind]()
    with pytest.raises(MultiModalSegError, match=message):
        finetune("tiny-liver", spec, None, tmp_path / "out", tiny_finetune())
    assert not (stores["store"] / "tiny-liver").exists()  # nothing was written


def test_finetune_needs_labeled_cases(stores, tmp_path):
    with pytest.raises(MultiModalSegError, match="needs labeled cases"):
        finetune("tiny-liver", [], UNLABELED, tmp_path / "out", tiny_finetune())
