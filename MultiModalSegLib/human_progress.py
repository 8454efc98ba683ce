"""Progress a person can read on a terminal; JSON lines stay the contract for programs.

Every long verb (``predict``, ``evaluate``, ``train``, ``finetune``, ``demo``) reports
through a :class:`~MultiModalSegLib.progress.ProgressReporter`. Which one the CLI builds
(:func:`reporter_for`):

* JSON lines on stdout (the contract the Slicer module parses, ``backend_process.py``) when
  the user passes ``--json`` or stdout is not a terminal (a pipe, a file, Slicer's
  subprocess), and when tqdm is not installed;
* otherwise a :class:`HumanProgressReporter`: one tqdm bar per stage with count, rate and
  time left (``inference:  50%|█████     | 24/48 [00:05<00:05, 4.80window/s]``), warnings and
  notes as lines above the bar, and a short summary at the end instead of the ``result``
  object (:mod:`MultiModalSegLib.human_summaries`).

Both receive the same events, so no verb knows which one it talks to. A stage that starts
while another stage's bar is unfinished (one case's inference inside a data set's ``cases``
bar) is shown as that bar's note instead of a new bar, so a batch keeps one line.
tqdm is imported only when a bar is drawn: ``mmseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from MultiModalSegLib.progress import ProgressReporter, _jsonable

__all__ = ["HumanProgressReporter", "TerminalProgress", "is_terminal", "relay_json_lines", "reporter_for",
           "stderr_progress", "tqdm_available"]

STAGE_UNITS = {"inference": "window", "training": "it", "finetuning": "it", "eval": "case", "cases": "case",
               "phantoms": "phantom", "loading": "file", "writing": "step"}
"""The unit tqdm shows the rate in, by stage name (default "step")."""


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is an interactive terminal (not a pipe, a file or pytest's capture)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def tqdm_available() -> bool:
    return importlib.util.find_spec("tqdm") is not None


FALLBACK_SIZE = (100, 24)
"""Columns and rows where the terminal reports no size (a pseudo-terminal without a window size reports 0 x 0,
and tqdm hides a bar below a screen of 0 rows)."""


def _terminal_has_size(stream: Any) -> bool:
    """True when the terminal reports its size (tqdm then follows it as the window is resized)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return False
    return size.columns > 0 and size.lines > 0


def _unit(stage: str) -> str:
    return next((unit for name, unit in STAGE_UNITS.items() if stage.startswith(name)), "step")


class TerminalProgress:
    """tqdm bars on one stream, one stage at a time (see the module docstring for nesting)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._bar: Any = None
        self._stage: str | None = None

    def update(self, stage: str, done: int, total: int, note: str = "") -> None:
        """Show ``done`` of ``total`` for ``stage``; ``note`` goes after the rate (a case, a loss)."""
        bar = self._bar
        if bar is not None and self._stage == stage:
            if total > 0 and bar.total != total:
                bar.total = total
            bar.set_postfix_str(note, refresh=False)
            bar.update(max(0, done - bar.n))
            if total > 0 and done >= total:
                self.close()
            return
        if bar is not None and bar.total and bar.n < bar.total:
            inner = f"{stage} {done}/{total}" if total > 0 else stage
            bar.set_postfix_str(f"{note}: {inner}" if note else inner)
            return
        self.close()
        from tqdm import tqdm

        self._stage = stage
        sized = _terminal_has_size(self.stream)
        self._bar = tqdm(total=total if total > 0 else None, initial=max(0, done), desc=stage, unit=_unit(stage),
                         file=self.stream, dynamic_ncols=sized, ncols=None if sized else FALLBACK_SIZE[0],
                         nrows=None if sized else FALLBACK_SIZE[1], leave=True, mininterval=0.2)
        if note:
            self._bar.set_postfix_str(note)
        if total > 0 and done >= total:
            self.close()

    def write(self, text: str) -> None:
        """A line above the bar (the bar is redrawn below it)."""
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Finish the current bar (it stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None


def progress_note(record: dict[str, Any]) -> str:
    """What a progress event adds to its bar: the case, the modality or kind, the training loss."""
    parts = []
    for key in ("case", "modality", "kind"):
        if record.get(key):
            parts.append(str(record[key]))
    losses = record.get("losses")
    if isinstance(losses, dict) and losses.get("loss") is not None:
        parts.append(f"loss {float(losses['loss']):.4f}")
    return " ".join(parts)


class HumanProgressReporter(ProgressReporter):
    """Renders the reporter's events for a person (see the module docstring); prints no JSON.

    ``verb`` picks the closing summary. The events are still returned as dicts, so code that
    inspects what it emitted works the same with either reporter.
    """

    def __init__(self, stream: TextIO | None = None, verb: str | None = None) -> None:
        super().__init__(stream=stream, quiet=False)
        self._stderr_bar = None  # this reporter draws its bars on its own stream
        self.verb = verb
        self.terminal = TerminalProgress(self.stream)
        self.started: dict[str, Any] = {}

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, **_jsonable(fields)}
        if not self.quiet:
            self._render(record)
        return record

    def _render(self, record: dict[str, Any]) -> None:
        from MultiModalSegLib import human_summaries

        event = record["event"]
        if event == "progress":
            self.terminal.update(str(record.get("stage", "")), int(record.get("done") or 0),
                                 int(record.get("total") or 0), progress_note(record))
            return
        if event in ("result", "error", "cancelled"):
            self.terminal.close()
        if event == "started":
            self.started = dict(record)
        lines = human_summaries.describe_event(self.verb, record, self.started)
        for line in lines:
            self.terminal.write(line)


def reporter_for(args: argparse.Namespace, stream: TextIO | None = None) -> ProgressReporter:
    """The reporter the CLI gives a verb: human on a terminal, JSON lines otherwise (see the module docstring)."""
    stream = stream if stream is not None else sys.stdout
    if getattr(args, "json", False) or not is_terminal(stream) or not tqdm_available():
        return ProgressReporter(stream=stream)
    return HumanProgressReporter(stream=stream, verb=getattr(args, "verb", None))


def stderr_progress() -> TerminalProgress | None:
    """Bars on stderr for scripts (``tools/reproduce*.py``) when stderr is a terminal and tqdm is installed."""
    if is_terminal(sys.stderr) and tqdm_available():
        return TerminalProgress(sys.stderr)
    return None


def relay_json_lines(lines: Iterable[str], log: TextIO, terminal: TerminalProgress | None) -> None:
    """Copy a child backend's output lines to ``log``; draw its ``progress`` events on ``terminal`` too.

    For scripts that run ``python -m MultiModalSegLib ...`` with stdout into a log file and
    still want a person at the terminal to see how far the child is.
    """
    for line in lines:
        log.write(line)
        log.flush()
        if terminal is None or not line.lstrip().startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "progress":
            terminal.update(str(record.get("stage", "")), int(record.get("done") or 0), int(record.get("total") or 0),
                            progress_note(record))
    if terminal is not None:
        terminal.close()
