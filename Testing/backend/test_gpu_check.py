"""tools/gpu_check.py: its CPU dry run (so it cannot rot between GPU loans) and its budgeted runner.

The dry run is the script's own ``--device cpu --quick`` mode in a child process, as ``make
gpu-check`` runs it on a GPU: every section, every bundled model, small sizes. The runner tests
give it sections that fail, run over the budget and succeed, and check that each is recorded and
none is lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from budgeted_sections import Budget, BudgetExhausted, run_sections  # noqa: E402

SECTIONS = ["bundled_models", "large_ct", "signed_distance", "training_steps", "finetune"]
BUNDLED = ["dtc-atrium-mr", "maml-brain-mr4", "maml-brain-tissue-mr3", "maml-liver-ct2"]


def run_check(output: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "MMSEG_MODEL_STORE": str(output / "store")}
    env.pop("MMSEG_BUNDLED_MODELS", None)  # the repository's bundled packages
    return subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--output", str(output), *extra],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=3000)


@pytest.mark.slow
def test_cpu_dry_run_runs_every_section_and_writes_the_report(tmp_path):
    # a generous budget: the dry run takes ~25 s of CPU, but this machine may be shared
    completed = run_check(tmp_path, "--device", "cpu", "--quick", "--budget-seconds", "2400")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["passed"] is True and report["quick"] is True
    assert list(report["sections"]) == SECTIONS
    assert all(record["status"] == "ok" for record in report["sections"].values())
    environment = report["environment"]
    assert environment["device"] == "cpu" and environment["versions"]["torch"] == torch.__version__
    assert environment["versions"]["SimpleITK"] and environment["versions"]["edt"]

    models = report["sections"]["bundled_models"]["results"]
    assert sorted(models) == BUNDLED
    for entry in models.values():  # CPU against CPU: identical, but every model's demo case ran
        assert entry["passed"] and entry["min_dice"] == 1.0 and entry["max_probability_difference"] == 0.0
        assert entry["cpu_fp32_s"] > 0 and entry["device_s_median"] > 0 and entry["device_runs"] == 1
    assert "t1, t2)" in models["maml-brain-tissue-mr3"]["case"]  # PD has no phantom: predicted without it
    large = report["sections"]["large_ct"]["results"]
    assert large["passed"] and large["labelmap_shape"] == [32, 64, 64] and large["timing"]["windows"] >= 1
    sdf = report["sections"]["signed_distance"]["results"]
    assert sdf["passed"] and sdf["max_abs_difference"] == 0.0
    steps = report["sections"]["training_steps"]["results"]
    assert sorted(steps) == ["dtc", "maml", "unet"]
    for method, entry in steps.items():
        assert "error" not in entry, (method, entry)
        assert entry["seconds_per_step"] > 0 and entry["parameters"] > 0 and entry["amp"] is False
        assert entry["last_loss"] == entry["last_loss"]  # not NaN
    assert steps["dtc"]["parameters"] > 9e6  # the reference's VNet-16 (9.44 M), whatever the patch
    tune = report["sections"]["finetune"]["results"]
    assert tune["passed"] and tune["iterations"] == 2 and tune["median_s_per_iteration"] > 0

    markdown = (tmp_path / "gpu-check.md").read_text()
    for heading in ("## 1. Bundled models", "## 2. Large CT", "## 3. signed_distance_map", "## 4. Training",
                    "Fine-tuning maml-liver-ct2"):
        assert heading in markdown
    assert all(f"| {model} |" in markdown for model in BUNDLED)
    assert "all checks passed: **True**" in markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the check would run for real")
def test_asking_for_cuda_without_a_gpu_says_so_and_writes_the_environment(tmp_path):
    completed = run_check(tmp_path, "--device", "cuda")
    assert completed.returncode == 2
    assert "no CUDA GPU" in completed.stderr
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["sections"] == {} and "--device cpu --quick" in report["error"]
    assert report["environment"]["gpu"] is None


def test_a_failing_section_is_recorded_and_the_next_still_runs():
    updates = []

    def fails(results, budget):
        results["measured"] = 1.5
        raise ValueError("out of memory in part 2")

    def works(results, budget):
        results["value"] = 42

    records = run_sections([("first", fails), ("second", works)], Budget(None),
                           on_update=lambda r: updates.append(list(r)))
    assert records["first"]["status"] == "failed"
    assert records["first"]["error"] == "ValueError: out of memory in part 2"
    assert "out of memory" in records["first"]["traceback"]
    assert records["first"]["results"] == {"measured": 1.5}  # what it measured before failing is kept
    assert records["second"] == {"status": "ok", "seconds": records["second"]["seconds"], "results": {"value": 42}}
    assert updates == [["first"], ["first", "second"]]  # the report is written after every section


def test_the_budget_stops_a_running_section_and_skips_the_rest():
    reached = []

    def quick(results, budget):
        results["done"] = True

    def endless(results, budget):
        results["started"] = True
        while True:  # only the alarm at the deadline ends this
            time.sleep(0.01)

    def later(results, budget):
        reached.append("later")

    started = time.monotonic()
    records = run_sections([("quick", quick), ("endless", endless), ("later", later)], Budget(0.5))
    assert time.monotonic() - started < 5
    assert records["quick"]["status"] == "ok"
    assert records["endless"]["status"] == "stopped" and records["endless"]["results"] == {"started": True}
    assert records["later"]["status"] == "skipped" and reached == []


def test_budget_check_between_parts_of_a_section():
    budget = Budget(0.0)
    with pytest.raises(BudgetExhausted, match="before the next model"):
        budget.check("the next model")
    Budget(None).check("anything")  # no limit: never raises
