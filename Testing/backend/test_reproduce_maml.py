"""tools/reproduce_maml.py: the same budget for every arm, the ensemble, read-back for resuming, paired statistics.

The full run trains five networks (an hour on a CPU); these tests check its parts on tiny,
untrained packages and 16x32x32 phantoms, in seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import pytest

from MultiModalSegLib.errors import MultiModalSegError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce_maml", REPO / "tools" / "reproduce_maml.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_maml"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("reproduce_maml", None)


def test_every_arm_gets_the_same_budget(reproduce, tmp_path):
    args = reproduce.parse_arguments(["--work", str(tmp_path), "--markdown", str(tmp_path / "m.md"),
                                      "--iterations", "7"])
    assert args.train_spec == "phantom:liver-ct2:40:1" and args.test_spec == "phantom:liver-ct2:20:9"
    budgets = set()
    for arm in reproduce.ARMS:
        command = reproduce.train_command(arm, args, tmp_path / arm.key, resume=False)
        value = {command[i]: command[i + 1] for i in range(3, len(command) - 1) if command[i].startswith("--")}
        budgets.add(tuple(value[k] for k in ("--data", "--iterations", "--patch", "--batch", "--seed")))
        overrides = reproduce.architecture_overrides(arm)
        assert overrides["base_filters"] == 8 and overrides["max_filters"] == 64
        assert ("ma_kernel" in overrides) == (arm.method == "maml")
        if arm.key == "ms-ma":
            assert value["--lambda-intra"] == "0.0"
    assert budgets == {("phantom:liver-ct2:40:1", "7", "32x64x64", "2", "1337")}
    with pytest.raises(SystemExit):
        reproduce.parse_arguments(["--work", str(tmp_path), "--markdown", "m.md", "--test-cases", "1"])


def test_paired_difference_and_verdict(reproduce):
    a = reproduce.Evaluated("a", "A", [], {"tumor": {"c1": 0.6, "c2": 0.7, "c3": 0.8}})
    b = reproduce.Evaluated("b", "B", [], {"tumor": {"c1": 0.5, "c2": 0.6, "c3": 0.7, "c4": 0.1}})
    d = reproduce.paired_difference(a, b, "tumor", 200)
    assert d["n"] == 3 and d["wins"] == 3 and d["mean"] == pytest.approx(0.1)
    assert reproduce.verdict(d).startswith("higher")
    d = reproduce.paired_difference(b, a, "tumor", 200)
    assert reproduce.verdict(d).startswith("lower")
    mixed = reproduce.Evaluated("m", "M", [], {"tumor": {"c1": 0.7, "c2": 0.5, "c3": 0.8}})
    assert "contains 0" in reproduce.verdict(reproduce.paired_difference(mixed, b, "tumor", 200))
    assert math.isnan(reproduce.paired_difference(a, b, "liver", 200)["mean"])


def save_tiny_unet(modalities: tuple[str, ...], folder: Path, seed: int = 0) -> Path:
    from test_fusion_unet import tiny_unet, unet_manifest

    from MultiModalSegLib.weights import save_model_package

    network = tiny_unet(modalities, deep_supervision=False, seed=seed)
    return save_model_package(network, unet_manifest(modalities, f"tiny-{'-'.join(modalities)}"), folder).folder


def test_ensemble_scores_cases_and_reads_back(reproduce, tmp_path):
    from MultiModalSegLib.datasets import load_cases

    members = {phase: save_tiny_unet((phase,), tmp_path / phase, seed=i) for i, phase in enumerate(("arterial",
                                                                                                      "venous"))}
    args = argparse.Namespace(work=tmp_path, overlap=0.25, bootstrap=50, test_spec="test")
    cases = load_cases("phantom:liver-ct2:2:9?shape=16x32x32")
    row = reproduce.evaluate_ensemble("ms-ensemble", "Ensemble", members, cases, args)
    assert {region.name for region in row.summary} == {"liver", "tumor"}
    assert (tmp_path / "eval" / "ms-ensemble" / "per_case.csv").is_file()
    again = reproduce.read_back(tmp_path / "eval" / "ms-ensemble", "ms-ensemble", "Ensemble")
    for first, second in zip(row.summary, again.summary):
        assert first.metrics["dice"].n == second.metrics["dice"].n
        if first.metrics["dice"].n:
            assert first.metrics["dice"].mean == pytest.approx(second.metrics["dice"].mean)
    assert set(again.per_case.get("liver", {})) == {case.case_id for case in cases}

    other_labels = _relabelled(save_tiny_unet(("venous",), tmp_path / "venous-liver-only"))
    with pytest.raises(MultiModalSegError, match="ensemble member"):
        reproduce.evaluate_ensemble("bad", "Bad", {"arterial": members["arterial"], "venous": other_labels}, cases,
                                    args)


def _relabelled(folder: Path) -> Path:
    """A copy of a package's manifest with other labels (the ensemble must refuse to average it)."""
    import json

    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["labels"] = manifest["labels"][:1]
    manifest_path.write_text(json.dumps(manifest))
    return folder
