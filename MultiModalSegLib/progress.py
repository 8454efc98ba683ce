"""JSON-line progress events on stdout, the contract between the backend and Slicer.

Every long-running verb prints one JSON object per line, for example
``{"event": "progress", "stage": "inference", "done": 12, "total": 48}``, and ends with
``{"event": "result", ...}``, ``{"event": "error", "message": ...}`` or
``{"event": "cancelled"}``. Lines are flushed at once so a reader sees them live.
A human-readable bar goes to stderr only when stderr is a terminal.
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
        self._bar = (not quiet) and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Print one event line and return it as a dict."""
        record = {"event": event, **_jsonable(fields)}
        if not self.quiet:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        return record

    def progress(self, stage: str, done: int, total: int, **fields: Any) -> dict[str, Any]:
        """A ``progress`` event; adds seconds elapsed and an ETA for the stage."""
        now = time.monotonic()
        start = self._started.setdefault(stage, now)
        elapsed = now - start
        eta = (elapsed / done * (total - done)) if done > 0 else None
        record = self.emit("progress", stage=stage, done=done, total=total,
                           elapsed_s=round(elapsed, 3), eta_s=None if eta is None else round(eta, 1),
                           **fields)
        if self._bar and total > 0:
            width = 30
            filled = int(width * done / total)
            sys.stderr.write(f"\r{stage:>12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
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
