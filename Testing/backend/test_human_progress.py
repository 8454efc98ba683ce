"""Progress for people on a terminal, JSON lines for programs: checked under a real pseudo-terminal (``pty``).

The backend is started as a user starts it (``python -m MultiModalSegLib``), its stdout (and
stderr) on the slave side of a pseudo-terminal, so ``isatty()`` is really true; what it draws
is read from the master side.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tiny_packages import write_small_ct

from MultiModalSegLib.human_progress import HumanProgressReporter, reporter_for
from MultiModalSegLib.human_summaries import describe_event
from MultiModalSegLib.progress import ProgressReporter

REPOSITORY = Path(__file__).resolve().parents[2]




def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the slave side was closed (the process ended)
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def run_backend(argv: list[str], stdout_on_terminal: bool, window: tuple[int, int] | None = None
                ) -> tuple[int, str, str]:
    """Run ``python -m MultiModalSegLib ARGV``; stderr always on a pseudo-terminal, stdout on it or on a pipe.

    Returns the exit code, stdout (the terminal's text when stdout is on it) and stderr's text.
    """
    master, slave = pty.openpty()
    if window is not None:  # rows, columns, as a terminal emulator sets them
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", window[0], window[1], 0, 0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), *sys.path]), "OMP_NUM_THREADS": "1"}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    process = subprocess.Popen([sys.executable, "-m", "MultiModalSegLib", *argv], stdin=subprocess.DEVNULL,
                               stdout=slave if stdout_on_terminal else subprocess.PIPE, stderr=slave, env=env,
                               cwd=REPOSITORY)
    os.close(slave)
    terminal = read_all(master)
    piped = process.stdout.read().decode() if process.stdout is not None else ""
    code = process.wait(timeout=120)
    os.close(master)
    return code, (terminal if stdout_on_terminal else piped), terminal


@pytest.fixture()
def two_phases(tmp_path):
    return write_small_ct(tmp_path / "in" / "a_art.nii.gz", 1), write_small_ct(tmp_path / "in" / "a_ven.nii.gz", 2)


@pytest.mark.slow
def test_on_a_terminal_predict_draws_bars_and_ends_with_a_summary_not_json(tiny_maml_package, two_phases, tmp_path):
    arterial, venous = two_phases
    code, out, _ = run_backend(["predict", "--model", str(tiny_maml_package.folder), "--input", f"arterial={arterial}",
                                "--input", f"venous={venous}", "--output", str(tmp_path / "out"), "--device", "cpu"],
                               stdout_on_terminal=True, window=(30, 120))
    assert code == 0, out
    assert '{"event"' not in out
    inference = [part for part in out.split("\r") if part.startswith("inference:")]
    assert inference and "100%" in inference[-1] and "4/4" in inference[-1] and "window/s" in inference[-1]
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+window/s\]", inference[-1])  # [elapsed<left, rate]
    assert "Done in" in out and "volumes: liver" in out and "result.json" in out
    assert (tmp_path / "out" / "result.json").is_file()


@pytest.mark.slow
def test_on_a_terminal_without_a_window_size_a_batch_shows_one_cases_bar_and_its_failures(tiny_maml_package,
                                                                                          tmp_path):
    """A pseudo-terminal that reports 0 x 0 (no window size) must still show the bar (tqdm hides it otherwise)."""
    write_small_ct(tmp_path / "cases" / "P1" / "P1_arterial.nii.gz", 1)
    write_small_ct(tmp_path / "cases" / "P1" / "P1_venous.nii.gz", 2)
    write_small_ct(tmp_path / "cases" / "P2" / "P2_venous.nii.gz", 3)
    code, out, _ = run_backend(["predict", "--model", str(tiny_maml_package.folder), "--data", str(tmp_path / "cases"),
                                "--output", str(tmp_path / "out"), "--device", "cpu"], stdout_on_terminal=True)
    assert code == 3, out
    assert '{"event"' not in out
    cases = [part for part in out.split("\r") if part.startswith("cases:")]
    assert cases and "2/2" in cases[-1] and "100%" in cases[-1]
    assert "P1: inference" in out  # the inner stage is the outer bar's note, not a bar of its own
    assert not any(part.startswith("inference:") for part in out.split("\r"))
    assert "failed P2:" in out and "1 segmented, 0 skipped (finished earlier), 1 failed" in out


@pytest.mark.slow
def test_json_lines_when_piped_or_asked_for_with_the_bar_on_a_terminal_stderr_only(tiny_maml_package, two_phases,
                                                                                   tmp_path):
    arterial, venous = two_phases
    argv = ["predict", "--model", str(tiny_maml_package.folder), "--input", f"arterial={arterial}",
            "--input", f"venous={venous}", "--device", "cpu"]
    code, out, err = run_backend(argv + ["--output", str(tmp_path / "piped")], stdout_on_terminal=False)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]  # every stdout line is one JSON object
    assert records[0]["event"] == "started" and records[-1]["event"] == "result"
    assert "inference:" in err and "100%" in err  # `mmseg predict ... > log` still shows progress on stderr

    code, out, _ = run_backend(argv + ["--output", str(tmp_path / "asked"), "--json"], stdout_on_terminal=True)
    assert code == 0
    lines = [line for line in out.replace("\r\n", "\n").splitlines() if line.strip()]
    assert [json.loads(line)["event"] for line in lines][-1] == "result"  # no bar mixed into the JSON
    assert "%|" not in out


def test_the_cli_picks_the_reporter_by_flag_and_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    import argparse

    assert type(reporter_for(argparse.Namespace(verb="predict", json=False), Terminal())) is HumanProgressReporter
    assert type(reporter_for(argparse.Namespace(verb="predict", json=True), Terminal())) is ProgressReporter
    assert type(reporter_for(argparse.Namespace(verb="predict", json=False), io.StringIO())) is ProgressReporter


def test_training_events_are_said_in_words(monkeypatch):
    stream = io.StringIO()
    reporter = HumanProgressReporter(stream=stream, verb="train")
    reporter.emit("started", verb="train", method="dtc", data="phantom:atrium-mr:4", output="/tmp/run",
                  device="cpu", resume=False, iterations=4)
    for done in (2, 4):
        reporter.emit("progress", stage="training", done=done, total=4, losses={"loss": 0.5 / done})
    reporter.emit("validation", stage="training", iteration=4, mean_dice=0.75, best=True)
    record = reporter.result(output="/tmp/run", result_json="/tmp/run/result.json", best="/tmp/run/best",
                             last="/tmp/run/last", iterations=4, best_metric=0.75, best_iteration=4, seconds=12.5)
    text = stream.getvalue()
    assert record["event"] == "result"
    assert "Training dtc on phantom:atrium-mr:4 for 4 iterations on cpu" in text
    assert "training: 100%" in text and "4/4" in text and "loss 0.1250" in text and "it/s" in text
    assert "Validation at iteration 4: mean Dice 0.750 (best so far)" in text
    assert "Trained 4 iterations in 12.5 s; best validation mean Dice 0.750 at iteration 4" in text
    assert "best model: /tmp/run/best" in text and "{" not in text


@pytest.mark.parametrize("verb, record, expected", [
    ("evaluate", {"n_cases": 3, "mean_dice": {"liver": 0.9, "tumor": None}, "timing": {"seconds": 4},
                  "summary_md": "s.md", "per_case_csv": "p.csv"}, "Evaluated 3 cases in 4.0 s; mean Dice: liver 0.900"),
    ("finetune", {"model": {"id": "m", "version": 3, "folder": "/f"}, "iterations": 20, "seconds": 200,
                  "result_json": "r.json"}, "Fine-tuned into m version 3 (20 iterations, 3.3 min)"),
    ("demo", {"output": "/d", "seconds": 9, "files": ["a", "b"],
              "metrics": {"case": "liver-ct2 seed 1", "both_phases": {"liver": {"dice": 0.81}}}},
     "Dice on liver-ct2 seed 1, both phases: liver 0.810"),
    ("models", {"message": "m version 2 is now current."}, "m version 2 is now current."),
])
def test_every_long_verb_ends_with_a_summary_in_words(verb, record, expected):
    lines = describe_event(verb, {"event": "result", **record}, {})
    assert any(expected in line for line in lines), lines


def test_a_child_backends_lines_all_reach_the_log_and_its_progress_a_bar():
    """tools/reproduce_dtc.py trains in child processes: their JSON lines go to a log, their progress to a bar."""
    from MultiModalSegLib.human_progress import TerminalProgress, relay_json_lines

    lines = ['{"event": "started", "verb": "train"}\n', "a stray print\n",
             '{"event": "progress", "stage": "training", "done": 1, "total": 2, "losses": {"loss": 0.9}}\n',
             '{"event": "progress", "stage": "training", "done": 2, "total": 2, "losses": {"loss": 0.7}}\n',
             '{"event": "result", "iterations": 2}\n']
    log, screen = io.StringIO(), io.StringIO()
    relay_json_lines(iter(lines), log, TerminalProgress(screen))
    assert log.getvalue() == "".join(lines)
    assert "training: 100%" in screen.getvalue() and "2/2" in screen.getvalue() and "loss 0.7000" in screen.getvalue()
    relay_json_lines(iter(lines), log, None)  # no terminal: the log only
    assert log.getvalue() == "".join(lines) * 2
