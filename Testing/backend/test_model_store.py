"""The user model store: versions, current pointer, rollback, bundled read-only, atomic writes.

Real networks (a tiny MAML), real safetensors packages on disk; ``MMSEG_MODEL_STORE`` and
``MMSEG_BUNDLED_MODELS`` point at temporary folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from MultiModalSegLib import model_store
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models import MAML
from MultiModalSegLib.weights import find_model_packages, load_model_package, save_model_package

REPO = Path(__file__).resolve().parents[2]


def tiny_network(seed: int) -> MAML:
    torch.manual_seed(seed)
    return MAML(["t1", "t2"], num_classes=2, base_filters=2, num_stages=2)


def manifest(model_id: str = "tiny-brain", version: int = 1) -> dict:
    return {
        "id": model_id, "version": version, "method": "maml", "title": "tiny test model",
        "modalities": [{"name": "t1", "patterns": ["*t1*"], "normalization": "mr"},
                       {"name": "t2", "patterns": ["*t2*"], "normalization": "mr"}],
        "reference_modality": "t1",
        "labels": [{"value": 1, "name": "tumor", "color": [1.0, 0.0, 0.0]}],
        "preprocessing": {}, "patch_size": [16, 16, 16],
        "architecture": {}, "weights": {}, "provenance": {"created": "2026-01-01T00:00:00"},
    }


@pytest.fixture()
def store(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(root))
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(bundled))
    return root


def bundle(tmp_path: Path, seed: int = 0) -> Path:
    folder = tmp_path / "bundled" / "tiny-brain"
    os.environ["MMSEG_ALLOW_BUNDLED_WRITE"] = "1"
    try:
        save_model_package(tiny_network(seed), manifest(), folder)
    finally:
        del os.environ["MMSEG_ALLOW_BUNDLED_WRITE"]
    return folder


def weights_of(package) -> dict[str, torch.Tensor]:
    return package.load_state_dict()


def test_store_location_follows_the_environment(store):
    assert model_store.user_model_store_dir() == store


def test_versions_after_a_bundled_v1_rollback_and_current(store, tmp_path):
    bundled = bundle(tmp_path)
    bundled_bytes = (bundled / "model.safetensors").read_bytes()
    v2 = model_store.add_version(tiny_network(2), manifest(), minimum_version=2)
    v3 = model_store.add_version(tiny_network(3), manifest(), minimum_version=2)
    assert (v2.version, v3.version) == (2, 3)
    assert v2.folder == store / "tiny-brain" / "v2"
    assert model_store.current_version("tiny-brain") == 3
    assert load_model_package("tiny-brain").version == 3  # an id resolves to the current version

    entries = model_store.list_model_versions()
    assert [(e["version"], e["source"], e["current"]) for e in entries] == [
        (1, "bundled", False), (2, "user", False), (3, "user", True)]

    model_store.rollback("tiny-brain", 2)
    assert load_model_package("tiny-brain").version == 2
    assert [e["current"] for e in model_store.list_model_versions("tiny-brain")] == [False, True, False]
    # roll back to the bundled version: the id resolves to the read-only bundled package
    model_store.rollback("tiny-brain", 1)
    package = load_model_package("tiny-brain")
    assert package.version == 1 and package.read_only
    assert [p.id for p in find_model_packages()] == ["tiny-brain"]
    # the next fine-tuned version still gets a new number; nothing was deleted or modified
    v4 = model_store.add_version(tiny_network(4), manifest(), minimum_version=2)
    assert v4.version == 4 and model_store.store_versions("tiny-brain") == [2, 3, 4]
    assert (bundled / "model.safetensors").read_bytes() == bundled_bytes
    for a, b in zip(weights_of(v2).values(), weights_of(model_store.version_package("tiny-brain", 2)).values()):
        assert torch.equal(a, b)
    assert model_store.leftover_staging(store) == []


def test_rollback_refuses_unknown_and_corrupt_versions(store, tmp_path):
    model_store.add_version(tiny_network(2), manifest(), minimum_version=2)
    model_store.add_version(tiny_network(3), manifest(), minimum_version=2)
    with pytest.raises(MultiModalSegError, match="no version 7"):
        model_store.rollback("tiny-brain", 7)
    weights = store / "tiny-brain" / "v2" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(MultiModalSegError, match="corrupt"):
        model_store.rollback("tiny-brain", 2)
    assert model_store.current_version("tiny-brain") == 3


def test_version_numbers_continue_after_the_starting_package(store):
    package = model_store.add_version(tiny_network(1), manifest(version=5), minimum_version=6)
    assert package.version == 6
    assert json.loads((package.folder / "manifest.json").read_text())["version"] == 6


def test_invalid_model_id_is_refused(store):
    with pytest.raises(MultiModalSegError, match="not a valid model id"):
        model_store.add_version(tiny_network(1), manifest(model_id="../escape"))


def test_stale_staging_of_a_dead_writer_is_removed(store):
    model_store.add_version(tiny_network(2), manifest(), minimum_version=2)
    # a writer that was killed (its pid no longer exists) left its staging folder behind
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=False)
    stale = store / "tiny-brain" / f"{model_store.INCOMING_PREFIX}{int(dead.stdout)}-abcd"
    (stale / "package").mkdir(parents=True)
    (stale / "package" / "model.safetensors").write_bytes(b"partial")
    assert model_store.leftover_staging(store)
    assert model_store.store_versions("tiny-brain") == [2]  # never listed as a version
    model_store.add_version(tiny_network(3), manifest(), minimum_version=2)
    assert not stale.exists()
    assert model_store.leftover_staging(store) == []


def test_cli_lists_versions_and_rolls_back(store, tmp_path):
    bundle(tmp_path)
    model_store.add_version(tiny_network(2), manifest(), minimum_version=2)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    listing = subprocess.run([sys.executable, "-m", "MultiModalSegLib", "models", "--versions", "--json"],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert listing.returncode == 0, listing.stderr
    events = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(e["event"], e["version"], e["current"]) for e in events] == [("model_version", 1, False),
                                                                          ("model_version", 2, True)]
    rolled = subprocess.run([sys.executable, "-m", "MultiModalSegLib", "models", "--rollback", "tiny-brain", "1"],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert rolled.returncode == 0, rolled.stderr
    result = [json.loads(line) for line in rolled.stdout.splitlines()][-1]
    assert result["event"] == "result" and result["version"] == 1
    assert model_store.current_version("tiny-brain") == 1
    wrong = subprocess.run([sys.executable, "-m", "MultiModalSegLib", "models", "--rollback", "tiny-brain", "9"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert wrong.returncode == 2
    assert "no version 9" in json.loads(wrong.stdout.splitlines()[-1])["message"]
