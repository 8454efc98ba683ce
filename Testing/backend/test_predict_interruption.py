"""An interrupted ``predict`` (issue 11, item 4): real signals to a real ``python -m MultiModalSegLib predict``.

Once there was no handler: SIGTERM killed it with -15, no event, and a half-filled output folder
with a ``.probability_*.tmp-*`` file; ``--overwrite`` kept files of the earlier run. Now SIGTERM /
SIGINT stop it at the next window with a ``cancelled`` event and exit 143 / 130 and nothing
written; SIGKILL at any moment leaves no folder that looks complete (the files are staged and
renamed into place at the end), and the next run into the same output works.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from read_only import Sabotage
from test_training_support import PYTHON, REPO, subprocess_env
from tiny_packages import make_tiny_maml, tiny_maml_manifest

from MultiModalSegLib import cli
from MultiModalSegLib.atomic import leftover_temporary_files
from MultiModalSegLib.weights import save_model_package


def write_volume(path: Path, shape: tuple[int, int, int], seed: int = 0) -> Path:
    array = np.random.default_rng(seed).normal(60, 30, size=shape).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    """The tiny MAML with a 16x64x64 patch: few windows, but output maps large enough to take a while to write."""
    manifest = {**tiny_maml_manifest(), "patch_size": [16, 64, 64]}
    return save_model_package(make_tiny_maml(), manifest, tmp_path / "model").folder


def predict_command(package: Path, inputs: dict[str, Path], output: Path, *extra: str) -> list[str]:
    command = [PYTHON, "-m", "MultiModalSegLib", "predict", "--model", str(package), "--output", str(output),
               "--device", "cpu", "--batch-size", "2", *extra]
    for name, path in inputs.items():
        command += ["--input", f"{name}={path}"]
    return command


def start_and_signal_at(command: list[str], when: Callable[[dict], bool], signal_number: int,
                        timeout: float = 180.0) -> tuple[int, list[dict]]:
    """Run ``command``, send ``signal_number`` at the first event matching ``when``; return (exit code, events)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=subprocess_env(), cwd=REPO)
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(json.loads(line))
            if when(seen[-1]):
                process.send_signal(signal_number)
                break
        else:
            raise AssertionError(f"no matching event before the timeout: {seen}")
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    seen += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(when(event) for event in seen), f"the run ended before the event: {seen}; stderr: {err[-2000:]}"
    return process.returncode, seen


def is_inference(event: dict) -> bool:
    return event["event"] == "progress" and event.get("stage") == "inference"


def is_writing(event: dict) -> bool:
    return event["event"] == "progress" and event.get("stage") == "writing" and event["done"] == 0


def hidden_staging(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_predict_at_the_next_window_and_writes_nothing(package, tmp_path, signal_number, exit_code):
    venous = write_volume(tmp_path / "venous.nii.gz", (32, 128, 128))
    output = tmp_path / "out"
    code, events = start_and_signal_at(predict_command(package, {"venous": venous}, output, "--overlap", "0.75"),
                                       is_inference, signal_number)
    assert code == exit_code
    cancelled = events[-1]
    assert cancelled["event"] == "cancelled" and cancelled["signal"] == signal.Signals(signal_number).name
    assert cancelled["exit_code"] == exit_code and cancelled["message"].startswith("Prediction was cancelled")
    inference = [e for e in events if is_inference(e)]
    assert cancelled["window"] == inference[-1]["done"] < inference[-1]["total"]  # stopped at the next window
    assert not any(e["event"] in ("result", "error") for e in events)
    assert not output.exists() and hidden_staging(tmp_path) == [] and leftover_temporary_files(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["inference", "writing"])
def test_sigkill_never_leaves_a_folder_that_looks_complete_and_the_next_run_works(package, tmp_path, stage):
    venous = write_volume(tmp_path / "venous.nii.gz", (32, 128, 128))
    arterial = write_volume(tmp_path / "arterial.nii.gz", (32, 128, 128), seed=1)
    inputs = {"venous": venous, "arterial": arterial}
    output = tmp_path / "out"
    code, events = start_and_signal_at(predict_command(package, inputs, output, "--overlap", "0"),
                                       is_inference if stage == "inference" else is_writing, signal.SIGKILL)
    assert code == -signal.SIGKILL and not any(e["event"] == "result" for e in events)
    assert not output.exists(), "a killed run left an output folder"
    if stage == "writing":  # killed while writing: only the hidden staging folder holds the first files
        (staging,) = hidden_staging(tmp_path)
        assert staging.name.startswith(".out.tmp-") and not (staging / "result.json").exists()
    code = subprocess.run(predict_command(package, inputs, output, "--overlap", "0"), env=subprocess_env(),
                          cwd=REPO, capture_output=True, text=True, check=False).returncode
    assert code == 0
    result = json.loads((output / "result.json").read_text())
    assert sorted(result["files"]) == sorted(p.name for p in output.iterdir())
    assert hidden_staging(tmp_path) == [], "the next run removes what the killed one left"


def test_overwrite_replaces_the_earlier_run_and_keeps_the_users_own_files(tiny_maml_package, tmp_path, capsys):
    """The --overwrite success path: a venous-only run after a two-phase one keeps no attention_arterial."""
    venous = write_volume(tmp_path / "venous.nii.gz", (8, 32, 32))
    arterial = write_volume(tmp_path / "arterial.nii.gz", (8, 32, 32), seed=1)
    output = tmp_path / "out"
    base = ["predict", "--model", str(tiny_maml_package.folder), "--output", str(output), "--device", "cpu"]
    assert cli.main([*base, "--input", f"venous={venous}", "--input", f"arterial={arterial}"]) == 0
    assert (output / "attention_arterial.nii.gz").is_file()
    (output / "notes.txt").write_text("the user's notes\n")
    (output / ".probability_liver.tmp-x1y2.nii.gz").write_bytes(b"what a killed old version left")
    capsys.readouterr()
    assert cli.main([*base, "--input", f"venous={venous}"]) == 2  # not without --overwrite
    assert "not empty" in capsys.readouterr().out

    assert cli.main([*base, "--input", f"venous={venous}", "--overwrite"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    result = json.loads((output / "result.json").read_text())
    assert result["available"] == ["venous"] and events[-1]["files"] == result["files"]
    assert sorted(p.name for p in output.iterdir()) == sorted([*result["files"], "notes.txt"])
    assert "attention_arterial.nii.gz" not in result["files"] and (output / "notes.txt").read_text() == \
        "the user's notes\n"
    assert leftover_temporary_files(output) == []


def test_a_cancel_before_the_commit_point_leaves_the_earlier_result_as_it_was(tiny_maml_package, tmp_path,
                                                                            capsys, monkeypatch):
    """SIGTERM while the files are written (a real signal, in this process) keeps the earlier run whole."""
    venous = write_volume(tmp_path / "venous.nii.gz", (8, 32, 32))
    output = tmp_path / "out"
    base = ["predict", "--model", str(tiny_maml_package.folder), "--output", str(output), "--device", "cpu",
            "--input", f"venous={venous}"]
    assert cli.main(base) == 0
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    terminate = Sabotage(is_writing, lambda: signal.raise_signal(signal.SIGTERM))
    monkeypatch.setattr("sys.stdout", terminate)
    assert cli.main([*base, "--overwrite"]) == 143
    assert terminate.fired and terminate.records()[-1]["event"] == "cancelled"
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
