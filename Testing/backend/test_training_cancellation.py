"""Cancellation with real signals sent to a real ``python -m MultiModalSegLib`` process.

SIGTERM (Slicer's Cancel, ``kill``) and SIGINT (Ctrl-C) stop training at the next iteration:
a ``cancelled`` event, exit code 143 / 130, nothing partial written, the previous version and
checkpoint intact, no temporary file left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_training_finetune import LABELED, UNLABELED, liver_manifest, snapshot
from test_training_support import ATRIUM, PYTHON, REPO, subprocess_env

from MultiModalSegLib.atomic import leftover_temporary_files
from MultiModalSegLib.models import MAML
from MultiModalSegLib.training.cancellation import CancellationToken, TrainingCancelled
from MultiModalSegLib.training.checkpoint import load_checkpoint
from MultiModalSegLib.weights import load_model_package, save_model_package


def run_until(command: list[str], env: dict, event: str, count: int = 1, timeout: float = 150.0):
    """Start the command, read its JSON lines until ``count`` ``event`` events arrived."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        record = json.loads(line)
        seen.append(record)
        if sum(r["event"] == event for r in seen) >= count:
            return process, seen
    process.kill()
    raise AssertionError(f"no {event} event; stderr: {process.stderr.read()[-2000:]}; events: {seen}")


def finish(process: subprocess.Popen, seen: list[dict]) -> tuple[int, list[dict]]:
    out, _ = process.communicate(timeout=120)
    seen = seen + [json.loads(line) for line in out.splitlines() if line.strip()]
    return process.returncode, seen


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name or ".incoming" in p.name]


def test_token_turns_a_signal_into_an_exception_at_the_next_check():
    with CancellationToken() as token:
        token.check(0)
        signal.raise_signal(signal.SIGTERM)  # recorded, not raised: the running iteration finishes
        assert token.requested
        with pytest.raises(TrainingCancelled) as caught:
            token.check(5)
    assert caught.value.exit_code == 143 and caught.value.iteration == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handler is back


def test_sigterm_cancels_finetune_and_leaves_the_store_as_it_was(tmp_path):
    store, bundled = tmp_path / "store", tmp_path / "bundled"
    torch.manual_seed(0)
    source = save_model_package(MAML(["arterial", "venous"], 3, base_filters=4, num_stages=3, max_filters=16),
                                liver_manifest(), bundled / "tiny-liver").folder
    # a previous fine-tuned version that must stay intact and current
    previous = save_model_package(MAML(["arterial", "venous"], 3, base_filters=4, num_stages=3, max_filters=16),
                                  {**liver_manifest(), "version": 2}, store / "tiny-liver" / "v2").folder
    (store / "tiny-liver" / "current").write_text("2\n")
    before_source, before_previous = snapshot(source), snapshot(previous)
    env = subprocess_env(MMSEG_MODEL_STORE=str(store), MMSEG_BUNDLED_MODELS=str(bundled))
    output = tmp_path / "out"
    command = [PYTHON, "-m", "MultiModalSegLib", "finetune", "--model", "tiny-liver", "--labeled", LABELED,
               "--unlabeled", UNLABELED, "--output", str(output), "--iterations", "100000", "--device", "cpu"]
    process, seen = run_until(command, env, "progress", count=2)
    process.send_signal(signal.SIGTERM)
    code, seen = finish(process, seen)

    assert code == 143
    assert seen[-1]["event"] == "cancelled" and seen[-1]["signal"] == "SIGTERM"
    assert not any(e["event"] in ("result", "error") for e in seen)
    assert sorted(p.name for p in (store / "tiny-liver").iterdir()) == ["current", "v2"]
    assert (store / "tiny-liver" / "current").read_text().strip() == "2"
    assert snapshot(source) == before_source and snapshot(previous) == before_previous
    assert leftovers(tmp_path) == [] and leftover_temporary_files(tmp_path) == []
    assert not (output / "result.json").exists()


def test_sigint_cancels_training_and_keeps_the_last_checkpoint(tmp_path):
    output = tmp_path / "run"
    command = [PYTHON, "-m", "MultiModalSegLib", "train", "--method", "dtc", "--data", ATRIUM, "--output", str(output),
               "--iterations", "100000", "--patch", "16x32x32", "--batch", "2", "--labeled-batch", "1",
               "--base-filters", "2", "--checkpoint-every", "2", "--validate-every", "100000", "--device", "cpu"]
    process, seen = run_until(command, subprocess_env(), "checkpoint", count=1)
    checkpoint_before = snapshot(output / "checkpoint")
    process.send_signal(signal.SIGINT)
    code, seen = finish(process, seen)

    assert code == 130
    assert seen[-1]["event"] == "cancelled" and seen[-1]["signal"] == "SIGINT"
    cancelled_at = seen[-1]["iteration"]
    checkpoints = [e["iteration"] for e in seen if e["event"] == "checkpoint"]
    state = load_checkpoint(output / "checkpoint").state  # complete and verified
    assert state.iteration == checkpoints[-1] <= cancelled_at
    if len(checkpoints) == 1:
        assert snapshot(output / "checkpoint") == checkpoint_before
    assert load_model_package(output / "last").manifest["provenance"]["iteration"] == checkpoints[-1]
    assert leftovers(output) == [] and leftover_temporary_files(output) == []
    assert not (output / "result.json").exists()
