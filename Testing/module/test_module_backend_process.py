"""The process runner with real subprocesses: events in order, errors as sentences, Cancel ends the tree.

The subprocess is ``fake_backend_process.py`` started exactly as the module starts the backend
(only its work is fake, so each test takes well under a second or two).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from module_testing import FAKE_BACKEND

from MultiModalSeg.MultiModalSegModuleLib.backend_process import (
    EVENT_OUTPUT,
    EVENT_PROGRESS,
    EVENT_RESULT,
    EVENT_STDERR,
    BackendProcess,
    BackendStartError,
    RunState,
    make_work_folder,
    parse_event_line,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="process groups and /proc are POSIX")


def fake_backend(mode: str, steps: int = 5, **options) -> BackendProcess:
    return BackendProcess([sys.executable, str(FAKE_BACKEND), mode, str(steps)], **options)


def process_is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as ended)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.joinpath("self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_progress_events_arrive_in_order_then_the_result() -> None:
    events = []
    outcome = fake_backend("progress", steps=6).start().wait(timeout=30, on_event=events.append)
    progress = [event for event in events if event.event == EVENT_PROGRESS]
    assert [(event.stage, event.done, event.total) for event in progress] == [("inference", n, 6) for n in range(1, 7)]
    assert progress[2].fraction() == pytest.approx(0.5)
    assert events[-1].event == EVENT_RESULT
    assert outcome.state == RunState.SUCCEEDED and outcome.succeeded
    assert outcome.exit_code == 0
    assert outcome.result["files"] == ["labelmap.nii.gz"]
    assert outcome.error_message is None


def test_poll_events_never_blocks_and_hands_out_each_event_once() -> None:
    process = fake_backend("progress", steps=4).start()
    started = time.monotonic()
    first = process.poll_events()
    assert time.monotonic() - started < 0.2  # returns at once even though the backend is still working
    seen = list(first)
    while not process.is_finished():
        seen += process.poll_events()
        time.sleep(0.02)
    assert [event.done for event in seen if event.event == EVENT_PROGRESS] == [1, 2, 3, 4]
    assert process.poll_events() == []  # nothing twice


def test_an_error_event_and_exit_code_2_give_the_backends_sentence() -> None:
    outcome = fake_backend("error").start().wait(timeout=30)
    assert outcome.state == RunState.FAILED
    assert outcome.exit_code == 2
    assert outcome.error_message == "Modality 'venous' is missing; select its volume."


def test_a_crash_without_error_event_is_explained_by_exit_code_and_last_stderr_line() -> None:
    outcome = fake_backend("crash").start().wait(timeout=30)
    assert outcome.state == RunState.FAILED
    assert outcome.exit_code == 1
    assert "exit code 1" in outcome.error_message
    assert "CUDA out of memory" in outcome.error_message
    assert "Traceback" in outcome.stderr_tail


def test_plain_lines_and_stderr_are_kept_for_the_log_but_are_no_errors() -> None:
    events = []
    outcome = fake_backend("chatty").start().wait(timeout=30, on_event=events.append)
    assert outcome.succeeded
    kinds = [event.event for event in events]
    assert EVENT_OUTPUT in kinds and EVENT_STDERR in kinds
    assert any(event.line == "a stray print from a library" for event in events if event.event == EVENT_OUTPUT)
    assert [record.event for record in outcome.records] == ["model_version", "result"]
    assert outcome.records[0].fields["version"] == 1


@posix_only
@pytest.mark.parametrize("mode", ["grandchild", "stubborn"])
def test_cancel_ends_the_process_and_its_children_and_the_temporary_files_go(tmp_path: Path, mode: str) -> None:
    """``grandchild``: SIGTERM to the group ends both. ``stubborn``: both ignore SIGTERM, so the runner
    must escalate to SIGKILL after the grace period."""
    work = make_work_folder(tmp_path)
    (work / "inputs").mkdir()
    (work / "inputs" / "venous.nii.gz").write_bytes(b"not really an image")
    process = fake_backend(mode, temporary_paths=[work], cancel_grace_seconds=0.5).start()
    pids: dict = {}

    def started() -> bool:
        for event in process.poll_events():
            if event.event == "started":
                pids.update(event.fields)
        return bool(pids)

    assert wait_until(started), "the fake backend did not report its pids"
    assert process_is_alive(pids["pid"]) and process_is_alive(pids["grandchild"])

    process.request_cancel()
    assert wait_until(lambda: (process.poll_events() or True) and process.is_finished(), timeout=15)
    outcome = process.outcome()
    assert outcome.state == RunState.CANCELLED
    assert "Cancelled" in outcome.error_message
    assert wait_until(lambda: not process_is_alive(pids["pid"]), timeout=5)
    assert wait_until(lambda: not process_is_alive(pids["grandchild"]), timeout=5), "the grandchild survived Cancel"

    assert process.remove_temporary_paths() == []
    assert not work.exists()


@posix_only
def test_blocking_cancel_returns_once_the_tree_is_gone() -> None:
    process = fake_backend("grandchild", cancel_grace_seconds=0.5).start()
    pids: dict = {}
    assert wait_until(lambda: any(pids.update(e.fields) or True for e in process.poll_events() if e.event == "started"))
    outcome = process.cancel()
    assert outcome.state == RunState.CANCELLED
    assert wait_until(lambda: not process_is_alive(pids["grandchild"]), timeout=5)


@posix_only
def test_a_run_that_finished_despite_the_cancel_is_reported_as_finished() -> None:
    """A SIGTERM after the backend's commit point (exit 0, a result): the results are real, so not 'Cancelled'."""
    process = fake_backend("late-cancel", cancel_grace_seconds=5).start()
    assert wait_until(lambda: any(e.event == "started" for e in process.poll_events()))
    process.request_cancel()
    assert wait_until(lambda: (process.poll_events() or True) and process.is_finished(), timeout=15)
    outcome = process.outcome()
    assert outcome.state == RunState.SUCCEEDED and outcome.exit_code == 0 and outcome.error_message is None
    assert outcome.result == {"model": {"id": "m", "version": 2}}
    assert [r.fields.get("late_cancel") for r in outcome.records if r.event == "warning"] == [True]


def test_wait_with_a_timeout_stops_the_backend_and_says_so() -> None:
    process = fake_backend("sleep", cancel_grace_seconds=0.5).start()
    outcome = process.wait(timeout=0.3)
    assert outcome.state == RunState.CANCELLED
    assert "did not finish within" in outcome.error_message


def test_temporary_files_cannot_be_removed_while_running_and_go_with_the_context_manager(tmp_path: Path) -> None:
    work = make_work_folder(tmp_path)
    with fake_backend("sleep", temporary_paths=[work], cancel_grace_seconds=0.5).start() as process:
        with pytest.raises(RuntimeError, match="still running"):
            process.remove_temporary_paths()
    assert process.outcome().state == RunState.CANCELLED
    assert not work.exists()


def test_a_backend_that_cannot_start_raises_a_sentence(tmp_path: Path) -> None:
    process = BackendProcess([str(tmp_path / "no-such-python"), "-m", "MultiModalSegLib", "predict"])
    with pytest.raises(BackendStartError, match="Could not start the backend"):
        process.start()
    assert process.state == RunState.FAILED


def test_parse_event_line() -> None:
    progress = parse_event_line('{"event": "progress", "stage": "inference", "done": 3, "total": 12}\n')
    assert (progress.event, progress.stage, progress.done, progress.total) == ("progress", "inference", 3, 12)
    assert progress.fraction() == pytest.approx(0.25)
    assert progress.describe() == "inference: 3/12"
    error = parse_event_line('{"event": "error", "message": "No input was given."}')
    assert error.message == "No input was given." and error.fraction() is None
    assert parse_event_line("Loading weights...").event == EVENT_OUTPUT
    assert parse_event_line('{"no_event_field": 1}').event == EVENT_OUTPUT
    assert parse_event_line("{broken json").event == EVENT_OUTPUT
    assert parse_event_line("warning text", stream="stderr").event == EVENT_STDERR
