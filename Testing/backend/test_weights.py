"""Model packages: verified loading (sha256, architecture), no pickle, atomic saving."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.weights import (
    find_model_packages,
    load_model_package,
    open_model_package,
    save_model_package,
    sha256_of_file,
)

from tiny_packages import make_tiny_dtc, make_tiny_maml, tiny_maml_manifest


def test_saved_package_has_the_three_files_and_a_correct_sha256(tiny_maml_package):
    folder = tiny_maml_package.folder
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "manifest.json", "model.safetensors"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["weights"]["sha256"] == sha256_of_file(folder / "model.safetensors")
    assert manifest["architecture"]["name"] == "MAML"
    assert manifest["format_version"] == 1


def test_loaded_network_reproduces_the_saved_one(tiny_maml_package):
    original = make_tiny_maml().eval()
    loaded = load_model_package(tiny_maml_package.folder).build_network("cpu")
    x = torch.randn(1, 2, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["joint"], original(x)["joint"])
    assert not loaded.training


def test_a_tampered_byte_is_refused(tiny_maml_package):
    weights = tiny_maml_package.weights_path
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(MultiModalSegError, match="corrupt or were modified"):
        load_model_package(tiny_maml_package.folder)


def test_a_truncated_file_is_refused(tiny_maml_package):
    weights = tiny_maml_package.weights_path
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(MultiModalSegError, match="sha256"):
        load_model_package(tiny_maml_package.folder)


def test_a_truncated_file_with_a_matching_hash_still_fails_cleanly(tiny_maml_package):
    """Even if someone rewrites the hash, a broken safetensors file gives a sentence, not a crash."""
    folder = tiny_maml_package.folder
    weights = tiny_maml_package.weights_path
    weights.write_bytes(weights.read_bytes()[:100])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights"]["sha256"] = sha256_of_file(weights)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MultiModalSegError, match="cannot be read as safetensors"):
        load_model_package(folder).build_network()


def test_a_manifest_for_another_architecture_is_refused(tiny_maml_package, tmp_path):
    dtc = save_model_package(make_tiny_dtc(), {**tiny_maml_manifest("other"), "method": "dtc"}, tmp_path / "dtc")
    folder = tiny_maml_package.folder
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["architecture"] = json.loads((dtc.folder / "manifest.json").read_text())["architecture"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    package = load_model_package(folder)  # the sha256 of the weights still matches
    with pytest.raises(MultiModalSegError, match="do not fit the architecture"):
        package.build_network()


def test_a_manifest_with_other_widths_is_refused(tiny_maml_package):
    folder = tiny_maml_package.folder
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["architecture"]["config"]["base_filters"] = 6
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MultiModalSegError, match="another shape"):
        load_model_package(folder).build_network()


def test_weights_are_never_unpickled(tiny_maml_package, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must not be used to load weights")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_model_package(tiny_maml_package.folder).build_network()


@pytest.mark.parametrize("problem, message", [
    ("missing_manifest", "has no manifest.json"),
    ("bad_json", "not valid JSON"),
    ("missing_field", "lacks the field"),
    ("unknown_method", "knows maml, dtc, unet"),
    ("missing_weights", "has no weights file"),
])
def test_broken_packages_give_a_sentence(tiny_maml_package, problem, message):
    folder = tiny_maml_package.folder
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if problem == "missing_manifest":
        manifest_path.unlink()
    elif problem == "bad_json":
        manifest_path.write_text("{not json")
    elif problem == "missing_field":
        del manifest["labels"]
        manifest_path.write_text(json.dumps(manifest))
    elif problem == "unknown_method":
        manifest["method"] = "segformer"
        manifest_path.write_text(json.dumps(manifest))
    elif problem == "missing_weights":
        tiny_maml_package.weights_path.unlink()
    with pytest.raises(MultiModalSegError, match=message):
        load_model_package(folder)


def test_lookup_by_id_and_unknown_id(tiny_maml_package, tmp_path):
    found = load_model_package("tiny-maml", search_paths=[tmp_path])
    assert found.folder == tiny_maml_package.folder
    assert [p.id for p in find_model_packages([tmp_path])] == ["tiny-maml"]
    with pytest.raises(MultiModalSegError, match="No model package 'nope'"):
        load_model_package("nope", search_paths=[tmp_path])


def test_saving_over_a_package_replaces_it_whole_and_leaves_no_temporary_folder(tiny_maml_package):
    folder = tiny_maml_package.folder
    before = sha256_of_file(tiny_maml_package.weights_path)
    save_model_package(make_tiny_maml(seed=1), tiny_maml_manifest(), folder)
    assert sha256_of_file(folder / "model.safetensors") != before
    load_model_package(folder).build_network()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_bundled_packages_are_read_only(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(bundled))
    package = save_model_package(make_tiny_maml(), tiny_maml_manifest(), bundled / "tiny-maml")
    assert open_model_package(package.folder).read_only
    with pytest.raises(MultiModalSegError, match="read-only"):
        save_model_package(make_tiny_maml(seed=3), tiny_maml_manifest(), bundled / "tiny-maml")
    shutil.rmtree(bundled)
