"""JSON-line progress events on stdout, the contract between the backend and Slicer.

Every long-running verb prints one JSON object per line, for example
``{"event": "progress", "stage": "inference", "done": 12, "total": 48}``, and ends with
``{"event": "result", ...}``, ``{"event": "error", "message": ...}`` or
``{"event": "cancelled"}``. Lines are flushed at once so a reader sees them live.
When the lines go to a file or a pipe and stderr is a terminal (``mmseg predict ... > log``),
a progress bar is drawn on stderr too. On a terminal the CLI uses the human reporter of
:mod:`MultiModalSegLib.human_progress` instead (same events, no JSON).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars, paths and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class ProgressReporter:
    """Writes progress events as JSON lines to ``stream`` (stdout by default).

    ``quiet=True`` keeps the object usable from Python code without printing anything.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self._started: dict[str, float] = {}
        self._stderr_bar: Any = None
        if not quiet:
            from MultiModalSegLib.human_progress import TerminalProgress, is_terminal, tqdm_available

            if is_terminal(sys.stderr) and not is_terminal(self.stream) and tqdm_available():
                self._stderr_bar = TerminalProgress(sys.stderr)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Print one event line and return it as a dict."""
        record = {"event": event, **_jsonable(fields)}
        if not self.quiet:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
            if self._stderr_bar is not None:
                self._show_on_stderr(record)
        return record

    def _show_on_stderr(self, record: dict[str, Any]) -> None:
        from MultiModalSegLib.human_progress import progress_note

        if record["event"] == "progress":
            self._stderr_bar.update(str(record.get("stage", "")), int(record.get("done") or 0),
                                    int(record.get("total") or 0), progress_note(record))
        elif record["event"] in ("result", "error", "cancelled"):
            self._stderr_bar.close()

    def progress(self, stage: str, done: int, total: int, **fields: Any) -> dict[str, Any]:
        """A ``progress`` event; adds seconds elapsed and an ETA for the stage."""
        now = time.monotonic()
        start = self._started.setdefault(stage, now)
        elapsed = now - start
        eta = (elapsed / done * (total - done)) if done > 0 else None
        record = self.emit("progress", stage=stage, done=done, total=total,
                           elapsed_s=round(elapsed, 3), eta_s=None if eta is None else round(eta, 1),
                           **fields)
        return record

    def restart_stage(self, stage: str) -> None:
        """Count ``stage``'s elapsed time and ETA from now (a stage that repeats, e.g. per case)."""
        self._started.pop(stage, None)

    def result(self, **fields: Any) -> dict[str, Any]:
        return self.emit("result", **fields)

    def error(self, message: str, **fields: Any) -> dict[str, Any]:
        return self.emit("error", message=message, **fields)

    def warning(self, message: str, **fields: Any) -> dict[str, Any]:
        return self.emit("warning", message=message, **fields)
