"""Run named measurement sections in order within a time budget, so that no failure loses the rest.

A GPU is lent for a few minutes at a time: a check that dies in its third part must still
report the first two, and one that runs long must stop in time to write what it has. So:

* each section is a callable ``section(results, budget)`` that fills the dict ``results`` as it
  goes (what it measured before a failure is kept);
* an exception in a section is recorded (type, message, the end of the traceback) and the next
  section runs;
* before a section starts, a spent budget marks it ``skipped``; while it runs, an alarm at the
  deadline raises :class:`BudgetExhausted` inside it (main thread, POSIX), so the caller can still
  write its report before whatever limit lies beyond the budget;
* ``on_update(records)`` is called after every section, to write the report at once.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Section = Callable[[dict[str, Any], "Budget"], None]


class BudgetExhausted(Exception):
    """The time budget ran out while a section was running."""


@dataclass
class Budget:
    """Seconds allowed from ``started`` (None: no limit)."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed()

    def check(self, what: str = "") -> None:
        """Raise :class:`BudgetExhausted` when the budget is spent (call between the parts of a section)."""
        if self.remaining() <= 0:
            before = f" before {what}" if what else ""
            raise BudgetExhausted(f"the time budget of {self.seconds:.0f} s ran out{before}")


class _Alarm:
    """Raise BudgetExhausted in the main thread after ``seconds`` (no-op where signals cannot be used)."""

    def __init__(self, seconds: float) -> None:
        self.usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
                       and seconds != float("inf"))
        self.seconds = max(seconds, 0.001)
        self.previous: Any = None

    def __enter__(self) -> _Alarm:
        if self.usable:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def _fire(self, signum: int, frame: Any) -> None:
        raise BudgetExhausted("the time budget ran out while this section was running")

    def __exit__(self, *exc: object) -> None:
        if self.usable:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


def run_sections(sections: Sequence[tuple[str, Section]], budget: Budget,
                 on_update: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run ``sections`` in order; return ``{name: {"status", "seconds", "results", ["error", "traceback"]}}``.

    ``status`` is ``ok``, ``failed`` (an exception; ``error`` says which), ``stopped`` (the budget
    ran out inside it) or ``skipped`` (the budget was spent before it started).
    """
    records: dict[str, dict[str, Any]] = {}
    for name, section in sections:
        results: dict[str, Any] = {}
        record: dict[str, Any] = {"status": "ok", "seconds": 0.0, "results": results}
        records[name] = record
        if budget.remaining() <= 0:
            record.update(status="skipped", error=f"the time budget of {budget.seconds:.0f} s was spent")
        else:
            started = time.monotonic()
            try:
                with _Alarm(budget.remaining()):
                    section(results, budget)
            except BudgetExhausted as exhausted:
                record.update(status="stopped", error=str(exhausted))
            except Exception as error:  # noqa: BLE001 -- recorded; the next section still runs
                record.update(status="failed", error=f"{type(error).__name__}: {error}",
                              traceback=traceback.format_exc(limit=-6))
            record["seconds"] = round(time.monotonic() - started, 2)
        print(f"[{budget.elapsed():7.1f} s] {name}: {record['status']}"
              + (f" ({record['error']})" if "error" in record else ""), flush=True)
        if on_update is not None:
            on_update(records)
    return records
