"""mmseg demo: phantom cases, and with a liver package segmentation, metrics and montage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tiny_packages import make_tiny_maml, tiny_maml_manifest

from MultiModalSegLib.demo import run_demo
from MultiModalSegLib.phantoms import PHANTOM_KINDS
from MultiModalSegLib.weights import save_model_package


@pytest.fixture()
def liver_package_as_bundled(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    manifest = {**tiny_maml_manifest("maml-liver-ct2"), "patch_size": [16, 64, 64]}
    save_model_package(make_tiny_maml(), manifest, bundled / "maml-liver-ct2")
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(bundled))
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))


@pytest.mark.slow
def test_demo_segments_the_liver_case_with_and_without_the_arterial_phase(tmp_path, liver_package_as_bundled):
    summary = run_demo(tmp_path / "demo")
    out = tmp_path / "demo"
    for kind in PHANTOM_KINDS:
        assert (out / f"{kind}.png").is_file()
    result = json.loads((out / "prediction" / "result.json").read_text())
    assert result["available"] == ["arterial", "venous"]
    missing = json.loads((out / "prediction-arterial-missing" / "result.json").read_text())
    assert missing["available"] == ["venous"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == summary["metrics"]
    for arm in ("both_phases", "arterial_missing"):
        assert set(metrics[arm]) == {"liver", "tumor"}
        assert 0.0 <= metrics[arm]["liver"]["dice"] <= 1.0
    picture = np.asarray(Image.open(out / "liver-ct2-segmentation.png"))
    assert picture.shape[1] == 4 * 256 and picture.std() > 10


def test_demo_without_a_model_still_writes_the_phantoms(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(tmp_path / "none"))
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))
    summary = run_demo(tmp_path / "demo")
    assert "metrics" not in summary
    assert sorted(p.name for p in (tmp_path / "demo").glob("*.png")) == sorted(f"{k}.png" for k in PHANTOM_KINDS)
