"""Stop a run cleanly on SIGTERM or SIGINT: training at the next iteration, ``predict`` at the next window.

Slicer's Cancel button, ``kill``, Ctrl-C and a cluster's pre-emption all arrive as a signal.
The handler installed here only *records* the signal; the training loop asks
:meth:`CancellationToken.check` between iterations (and between validation cases), ``predict``
after every batch of windows, which raises :class:`RunCancelled`. Because nothing is interrupted
half-way, every file that was being written finishes (they are all atomic anyway) and nothing new
is written after the signal: the previous checkpoint and model version stay as they were.

Commit point: each run that writes a result has one moment after which it is complete (the
rename that makes a fine-tuned version or a prediction folder appear). Before it a signal
cancels and nothing is written; after it the run finishes, and :func:`note_late_cancel` says
that the signal came too late, so the exit code (0) and the events (``warning``, ``result``)
agree.

Exit codes (documented in the README and used by ``mmseg train`` / ``finetune`` / ``predict``):
``130`` after SIGINT and ``143`` after SIGTERM (128 + the signal number, the shell convention),
distinct from ``2`` (a user error) and ``1`` (a crash). A second signal of the same kind while
stopping restores the default handler and re-raises it, so a stuck process can still be killed.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

EXIT_CODE_SIGINT = 130
EXIT_CODE_SIGTERM = 143


def exit_code_for(signal_number: int | None) -> int:
    """128 + the signal number (130 for SIGINT, 143 for SIGTERM); 130 if unknown."""
    if signal_number is None:
        return EXIT_CODE_SIGINT
    return 128 + int(signal_number)


class RunCancelled(Exception):
    """Raised at an iteration (or window) boundary after a cancellation signal."""

    def __init__(self, signal_number: int | None, iteration: int | None = None, activity: str = "Training",
                 unit: str = "iteration") -> None:
        self.signal_number = signal_number
        self.iteration = iteration
        self.unit = unit
        name = signal.Signals(signal_number).name if signal_number else "a request"
        super().__init__(f"{activity} was cancelled by {name} at {unit} {iteration}.")

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.signal_number)

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signal_number).name if self.signal_number else None


TrainingCancelled = RunCancelled
"""The name training code and its tests use."""


def report_cancelled(reporter: Any, exc: RunCancelled) -> int:
    """The ``cancelled`` event (message, signal, where it stopped, exit code); returns the exit code."""
    reporter.emit("cancelled", message=str(exc), signal=exc.signal_name, exit_code=exc.exit_code,
                  **{exc.unit: exc.iteration})
    return exc.exit_code


def note_late_cancel(token: CancellationToken, reporter: Any, committed: str) -> None:
    """After the commit point a signal no longer cancels: a ``warning`` says so before the ``result``.

    ``committed`` completes "The cancel request (SIGTERM) arrived after ...", e.g. "the new
    version was saved".
    """
    if token.requested:
        name = signal.Signals(token.signal_number).name if token.signal_number else "a request"
        reporter.warning(f"The cancel request ({name}) arrived after {committed}; the run is complete and "
                         "its results are kept.", late_cancel=True, signal=name)


class CancellationToken:
    """Records a cancellation request; install it as the SIGTERM/SIGINT handler while training.

    Use as a context manager::

        with CancellationToken() as token:
            for iteration in ...:
                token.check(iteration)

    ``cancel()`` requests cancellation from Python (e.g. a test or an embedding application).
    Outside the main thread signal handlers cannot be installed; the token then only works
    through ``cancel()``.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def cancel(self, signal_number: int | None = None) -> None:
        """Request cancellation (what the signal handler does)."""
        if self.signal_number is None:
            self.signal_number = signal_number
        self._event.set()

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.requested and signal_number == self.signal_number:
            # A second identical signal: stop waiting for the loop and die the default way.
            signal.signal(signal_number, signal.SIG_DFL)
            signal.raise_signal(signal_number)
            return
        self.cancel(signal_number)

    def check(self, iteration: int | None = None, activity: str = "Training", unit: str = "iteration") -> None:
        """Raise :class:`RunCancelled` if cancellation was requested."""
        if self.requested:
            raise RunCancelled(self.signal_number, iteration, activity, unit)

    def install(self) -> CancellationToken:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def __enter__(self) -> CancellationToken:  # noqa: PYI034 - subclasses are not expected
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()
