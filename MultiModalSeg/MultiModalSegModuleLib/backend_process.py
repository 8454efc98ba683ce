"""One run of the backend in another process: JSON-line events in, Cancel out, temporary files gone.

Segmentation and fine-tuning run out of process (as Slicer's AI extensions do): Slicer's
UI stays responsive, a crash in torch cannot take the application down, and Cancel can
always stop the work. The backend prints one JSON object per line on stdout
(``{"event": "progress", "stage": "inference", "done": 12, "total": 48}``, then ``result``,
``error`` with exit code 2, or ``cancelled``); see ``MultiModalSegLib/progress.py``.

:class:`BackendProcess` starts the command, reads stdout and stderr in two daemon threads
(a pipe that is not drained would block the backend once its buffer is full), and hands
the parsed events to whoever calls :meth:`BackendProcess.poll_events`: the Slicer panel
from a ``qt.QTimer``, the self-tests and pytest from :meth:`BackendProcess.wait`. The
threads only queue lines; all bookkeeping happens in the caller's thread, so nothing here
needs a lock beyond the queue's own.

Cancel ends the whole process tree, not just the Python process: the backend may have
started data-loader workers. On POSIX the backend starts in a new session, so it leads its
own process group; Cancel sends SIGTERM to the group (the training loop stops cleanly at
the next iteration, see ``MultiModalSegLib/training/cancellation.py``), then SIGKILL to
whatever is left of the group after a grace period, and once more after the leader has
exited, so no orphaned worker survives. On Windows ``taskkill /T /F`` ends the tree. A run
that exits 0 with a ``result`` although Cancel was pressed finished its commit point first
(it says so in a ``warning``): it is reported as succeeded, since its results exist.

Nothing here imports Qt or Slicer; the module adapts it with a timer.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "EVENT_PROGRESS",
    "EVENT_RESULT",
    "EVENT_ERROR",
    "EVENT_CANCELLED",
    "EVENT_WARNING",
    "EVENT_OUTPUT",
    "EVENT_STDERR",
    "BackendEvent",
    "BackendOutcome",
    "BackendProcess",
    "BackendStartError",
    "RunState",
    "DEFAULT_CANCEL_GRACE_SECONDS",
    "make_work_folder",
    "parse_event_line",
]

EVENT_PROGRESS = "progress"
EVENT_RESULT = "result"
EVENT_ERROR = "error"
EVENT_CANCELLED = "cancelled"
EVENT_WARNING = "warning"
EVENT_OUTPUT = "output"
"""A stdout line that is not a JSON event (a stray print): kept for the log, never an error."""
EVENT_STDERR = "stderr"
"""A stderr line (warnings, a traceback): shown in the log, its tail explains a crash."""

DEFAULT_CANCEL_GRACE_SECONDS = 5.0
"""Time between SIGTERM and SIGKILL: the training loop needs at most one iteration to stop."""

_READER_GRACE_SECONDS = 2.0
"""After the backend exits, how long to wait for its pipes to close. A grandchild that kept
the pipe open (and was not cancelled) must not keep the run 'running' for ever."""

_STDERR_TAIL_LINES = 40


class BackendStartError(RuntimeError):
    """The backend could not be started at all (no Python executable, bad working folder)."""


class RunState(str, Enum):
    """Where a backend run is. Once SUCCEEDED, FAILED or CANCELLED it does not change."""

    NOT_STARTED = "not started"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class BackendEvent:
    """One line the backend printed, parsed.

    ``event`` is the JSON object's ``event`` field (``progress``, ``result``, ``error``,
    ``cancelled``, ``warning``, ``model_version``, ...), or :data:`EVENT_OUTPUT` /
    :data:`EVENT_STDERR` for plain text lines. ``fields`` holds the object's other fields.
    """

    event: str
    fields: Mapping[str, Any]
    line: str

    @property
    def stage(self) -> str:
        return str(self.fields.get("stage", ""))

    @property
    def done(self) -> int:
        return int(self.fields.get("done") or 0)

    @property
    def total(self) -> int:
        return int(self.fields.get("total") or 0)

    @property
    def message(self) -> str:
        return str(self.fields.get("message", ""))

    def fraction(self) -> float | None:
        """``done / total`` of a progress event in [0, 1]; None for other events or an unknown total."""
        if self.event != EVENT_PROGRESS or self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def describe(self) -> str:
        """One line for the panel's log."""
        if self.event == EVENT_PROGRESS:
            return f"{self.stage}: {self.done}/{self.total}" if self.total else self.stage
        if self.event in (EVENT_ERROR, EVENT_CANCELLED):
            return f"{self.event}: {self.message}" if self.message else self.event
        if self.event == EVENT_WARNING:
            return f"warning: {self.message}"
        if self.event in (EVENT_OUTPUT, EVENT_STDERR):
            return self.line
        return self.line if len(self.line) <= 300 else self.line[:297] + "..."


def parse_event_line(line: str, stream: str = "stdout") -> BackendEvent:
    """Parse one line of the backend's stdout (JSON events) or stderr (plain text)."""
    text = line.rstrip("\r\n")
    if stream == "stderr":
        return BackendEvent(EVENT_STDERR, {}, text)
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            fields = {key: value for key, value in record.items() if key != "event"}
            return BackendEvent(record["event"], fields, stripped)
    return BackendEvent(EVENT_OUTPUT, {}, text)


@dataclass
class BackendOutcome:
    """How a finished run ended.

    ``result`` holds the fields of the last ``result`` event; ``error_message`` is one
    sentence for the user (the backend's ``error`` message, else what the exit code and
    the last stderr line say); ``records`` keeps every stdout event except progress (for
    example the ``model_version`` lines of ``models --versions --json``).
    """

    state: RunState
    exit_code: int | None
    result: dict[str, Any] | None = None
    error_message: str | None = None
    records: list[BackendEvent] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def succeeded(self) -> bool:
        return self.state == RunState.SUCCEEDED


def make_work_folder(parent: str | Path | None = None, prefix: str = "MultiModalSeg-") -> Path:
    """A new, empty temporary folder for one run's input and output files."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=None if parent is None else str(parent)))


def _signal_process_group(process_group_id: int, signal_number: int) -> None:
    try:
        os.killpg(process_group_id, signal_number)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already (PermissionError: macOS reports a dead group so)


def _kill_windows_tree(pid: int) -> None:
    subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
                   check=False)


def _read_lines(stream: Any, stream_name: str, lines: queue.Queue) -> None:
    """Reader thread: queue each line of ``stream`` as ``(stream_name, line)`` until EOF."""
    try:
        for line in iter(stream.readline, ""):
            lines.put((stream_name, line))
    except (OSError, ValueError):
        pass  # the pipe was closed under us: the process is gone
    finally:
        try:
            stream.close()
        except OSError:
            pass


class BackendProcess:
    """One backend command, run in the background, polled for events, cancellable.

    Typical use from a timer::

        process = BackendProcess(command, environment=env, temporary_paths=[work_folder]).start()
        ...
        for event in process.poll_events():   # every 100-200 ms, never blocks
            show(event)
        if process.is_finished():
            outcome = process.outcome()
            ...                                # load the outputs
            process.remove_temporary_paths()

    or, where blocking is fine (self-tests, scripts): ``outcome = process.wait(on_event=print)``.
    """

    def __init__(
        self,
        command: Sequence[str],
        environment: Mapping[str, str] | None = None,
        working_directory: str | Path | None = None,
        temporary_paths: Iterable[str | Path] = (),
        cancel_grace_seconds: float = DEFAULT_CANCEL_GRACE_SECONDS,
        description: str = "",
    ) -> None:
        self.command = [str(part) for part in command]
        self.environment = dict(environment) if environment is not None else None
        self.working_directory = Path(working_directory) if working_directory is not None else None
        self.temporary_paths: list[Path] = [Path(path) for path in temporary_paths]
        self.cancel_grace_seconds = float(cancel_grace_seconds)
        self.description = description or " ".join(self.command[1:4])

        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._state = RunState.NOT_STARTED
        self._outcome: BackendOutcome | None = None
        self._exited_at: float | None = None
        self._cancel_requested_at: float | None = None
        self._killed_group = False
        self._last_result: dict[str, Any] | None = None
        self._last_error: str | None = None
        self._cancelled_event = False
        self._records: list[BackendEvent] = []
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self.last_progress: BackendEvent | None = None

    # -- starting ---------------------------------------------------------------------------------------------

    def start(self) -> BackendProcess:
        """Start the command; raise :class:`BackendStartError` with a sentence if it cannot start."""
        if self._state != RunState.NOT_STARTED:
            raise RuntimeError("A BackendProcess runs once; create a new one to run again.")
        options: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "text": True,
            "encoding": "utf-8",
            "errors": "replace",
            "bufsize": 1,
            "env": self.environment,
            "cwd": str(self.working_directory) if self.working_directory is not None else None,
        }
        if os.name == "nt":
            options["creationflags"] = (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                                        | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            options["start_new_session"] = True  # its own process group: Cancel reaches its children
        try:
            self._process = subprocess.Popen(self.command, **options)
        except OSError as error:
            self._state = RunState.FAILED
            self._outcome = BackendOutcome(RunState.FAILED, None, error_message=(
                f"Could not start the backend ({self.command[0]}): {error.strerror or error}; check that "
                "Slicer's Python (PythonSlicer) is installed and the temporary folder is writable."))
            raise BackendStartError(self._outcome.error_message) from error
        self._state = RunState.RUNNING
        for stream, name in ((self._process.stdout, "stdout"), (self._process.stderr, "stderr")):
            reader = threading.Thread(target=_read_lines, args=(stream, name, self._lines),
                                      name=f"MultiModalSeg {name} reader", daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested_at is not None

    def is_running(self) -> bool:
        return self._state == RunState.RUNNING

    def is_finished(self) -> bool:
        """True once the run has ended and every line it printed was handed out by :meth:`poll_events`
        (the end is noticed by :meth:`poll_events`, so poll before asking)."""
        return self._state not in (RunState.NOT_STARTED, RunState.RUNNING)

    def outcome(self) -> BackendOutcome | None:
        """How the run ended; None while it runs."""
        return self._outcome

    # -- events -----------------------------------------------------------------------------------------------

    def poll_events(self) -> list[BackendEvent]:
        """Every event printed since the last call, in order; never blocks.

        Also advances a pending Cancel (SIGKILL after the grace period) and notices the
        end of the run, after which :meth:`outcome` is set.
        """
        if self._process is None or self._state != RunState.RUNNING:
            return []
        events = self._drain()
        self._advance_cancel()
        exit_code = self._process.poll()
        if exit_code is not None:
            now = time.monotonic()
            if self._exited_at is None:
                self._exited_at = now
            readers_done = not any(reader.is_alive() for reader in self._readers)
            if readers_done or now - self._exited_at > _READER_GRACE_SECONDS:
                events.extend(self._drain())  # what the readers queued since the first drain
                self._finish(exit_code)
        return events

    def _drain(self) -> list[BackendEvent]:
        """Parse and remember every queued line."""
        events: list[BackendEvent] = []
        while True:
            try:
                stream_name, line = self._lines.get_nowait()
            except queue.Empty:
                return events
            event = parse_event_line(line, stream_name)
            self._remember(event)
            events.append(event)

    def _remember(self, event: BackendEvent) -> None:
        if event.event == EVENT_PROGRESS:
            self.last_progress = event
        elif event.event == EVENT_STDERR:
            if event.line.strip():
                self._stderr_tail.append(event.line)
        elif event.event != EVENT_OUTPUT:
            self._records.append(event)
            if event.event == EVENT_RESULT:
                self._last_result = dict(event.fields)
            elif event.event == EVENT_ERROR:
                self._last_error = event.message or "The backend reported an error without a message."
            elif event.event == EVENT_CANCELLED:
                self._cancelled_event = True

    def _finish(self, exit_code: int) -> None:
        if self.cancel_requested and os.name != "nt" and not self._killed_group:
            # The leader is gone; end anything it left behind in its group.
            _signal_process_group(self._process.pid, signal.SIGKILL)
            self._killed_group = True
        if exit_code == 0 and self._last_result is not None and not self._cancelled_event:
            # The backend finished anyway: the cancel came after its commit point (it says so in a
            # warning), and its results exist, so they must not be reported as "nothing was changed".
            state, message = RunState.SUCCEEDED, None
        elif self.cancel_requested or self._cancelled_event:
            state, message = RunState.CANCELLED, "Cancelled; nothing was changed."
        elif self._last_error is not None:
            state, message = RunState.FAILED, self._last_error
        elif exit_code != 0:
            state, message = RunState.FAILED, self._crash_message(exit_code)
        else:
            state, message = RunState.SUCCEEDED, None
        self._state = state
        self._outcome = BackendOutcome(state=state, exit_code=exit_code, result=self._last_result,
                                       error_message=message, records=list(self._records),
                                       stderr_tail="\n".join(self._stderr_tail))

    def _crash_message(self, exit_code: int) -> str:
        last_line = self._stderr_tail[-1].strip() if self._stderr_tail else ""
        if exit_code < 0:
            how = f"was ended by signal {-exit_code}"
        else:
            how = f"stopped with exit code {exit_code}"
        detail = f" ({last_line})" if last_line else ""
        return (f"The segmentation backend {how}{detail}; see the log for details, and report it if it "
                "happens again.")

    # -- cancel -----------------------------------------------------------------------------------------------

    def request_cancel(self) -> None:
        """Ask the run to stop; never blocks. The process tree gets SIGTERM now and SIGKILL after
        the grace period (on Windows the tree is ended at once). Poll until :meth:`is_finished`."""
        if self._process is None or self._state != RunState.RUNNING or self.cancel_requested:
            return
        self._cancel_requested_at = time.monotonic()
        if os.name == "nt":
            _kill_windows_tree(self._process.pid)
        else:
            _signal_process_group(self._process.pid, signal.SIGTERM)

    def _advance_cancel(self) -> None:
        if (self._cancel_requested_at is not None and not self._killed_group and os.name != "nt"
                and time.monotonic() - self._cancel_requested_at >= self.cancel_grace_seconds):
            _signal_process_group(self._process.pid, signal.SIGKILL)
            self._killed_group = True

    def cancel(self, timeout: float | None = None) -> BackendOutcome | None:
        """Stop the run and wait until it has ended (at most the grace period plus ``timeout``)."""
        if self._process is None:
            return self._outcome
        self.request_cancel()
        limit = self.cancel_grace_seconds + (timeout if timeout is not None else 10.0)
        return self.wait(timeout=limit)

    # -- blocking use -----------------------------------------------------------------------------------------

    def wait(
        self,
        timeout: float | None = None,
        on_event: Callable[[BackendEvent], None] | None = None,
        poll_interval: float = 0.05,
    ) -> BackendOutcome:
        """Block until the run ends, passing every event to ``on_event``.

        After ``timeout`` seconds the run is cancelled (the outcome is then CANCELLED with a
        message saying so). Returns the outcome.
        """
        if self._process is None:
            if self._outcome is not None:
                return self._outcome
            raise RuntimeError("The backend was not started; call start() first.")
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        while True:
            for event in self.poll_events():
                if on_event is not None:
                    on_event(event)
            if self.is_finished():
                break
            now = time.monotonic()
            if deadline is not None and now > deadline:
                if not self.cancel_requested:
                    timed_out = True
                    self.request_cancel()
                    deadline = now + self.cancel_grace_seconds + 10.0
                else:
                    self._process.kill()  # last resort: the process group did not end in time
                    deadline = None
            time.sleep(poll_interval)
        if timed_out and self._outcome is not None:
            self._outcome.error_message = f"The backend did not finish within {timeout:.0f} s and was stopped."
        return self._outcome

    # -- temporary files --------------------------------------------------------------------------------------

    def add_temporary_path(self, path: str | Path) -> Path:
        """Register a file or folder to delete with :meth:`remove_temporary_paths`."""
        path = Path(path)
        self.temporary_paths.append(path)
        return path

    def remove_temporary_paths(self) -> list[Path]:
        """Delete the registered temporary files and folders; return those that could not be deleted.

        Only after the run has ended (a running backend may still write there, and Windows
        cannot delete files it holds open).
        """
        if self._state == RunState.RUNNING:
            raise RuntimeError("The backend is still running; cancel it or wait before removing its files.")
        left: list[Path] = []
        for path in self.temporary_paths:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
            except OSError:
                left.append(path)
        self.temporary_paths = left
        return left

    def __enter__(self) -> BackendProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._state == RunState.RUNNING:
            self.cancel()
        self.remove_temporary_paths()
