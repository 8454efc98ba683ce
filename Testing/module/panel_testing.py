"""What the panel scenarios share (imported by name: ``panel_testing``).

:class:`RecordingView` is the panel as the controller sees it: it asks the controller for its state
on every refresh (so every state the panel would show is computed and kept) and records the log,
the error dialogs and the questions. :class:`RecordingInstaller` stands in for what installing needs
from the Slicer application (``slicer.packaging.pip_ensure``, ``slicer.util.pip_install``, the
PyTorch extension), following their documented contracts: pip_ensure raises ``RuntimeError`` when
the user declines and ``CalledProcessError`` when pip fails.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSeg.MultiModalSegModuleLib.dependencies import SlicerInstaller

if TYPE_CHECKING:
    from MultiModalSeg.MultiModalSegModuleLib.panel_state import PanelState


class RecordingView:
    """The controller's view in the tests: it keeps every state shown and what the user was told."""

    def __init__(self, answer: bool = True) -> None:
        self.controller: Any = None
        self.shown: list[PanelState] = []
        self.log: list[str] = []
        self.errors: list[tuple[str, str]] = []
        self.questions: list[str] = []
        self.answer = answer

    def refresh(self) -> None:
        self.shown.append(self.controller.state())

    def append_log(self, text: str) -> None:
        self.log.append(text)

    def show_error(self, text: str, details: str = "") -> None:
        self.errors.append((text, details))

    def confirm(self, question: str) -> bool:
        self.questions.append(question)
        return self.answer


def run_until_idle(controller: Any, timeout: float = 300.0) -> PanelState:
    """Poll as the widget's timer does until no job runs; the last state."""
    deadline = time.monotonic() + timeout
    while controller.job is not None:
        assert time.monotonic() < deadline, f"the {controller.job.kind} job did not end within {timeout:.0f} s"
        controller.poll()
        time.sleep(0.1)
    return controller.state()


class RecordingInstaller:
    """Stand-ins for Slicer's installers that record their calls. ``ensure``: None (Slicer 5.10, no
    pip_ensure), ``"install"`` or ``"decline"``; ``pip_error``: raised by pip; ``torch_answer``: the
    PyTorch extension's result (None: not installed); ``installs_into``: a folder on sys.path where a
    successful install writes the dist-info pip would write."""

    def __init__(self, testing: bool = False, answer: bool = True, ensure: str | None = None,
                 pip_error: Exception | None = None, torch_answer: bool | None = None,
                 installs_into: Path | None = None) -> None:
        self.calls: list[tuple] = []
        self.answer, self.pip_error, self.installs_into = answer, pip_error, installs_into
        self.ensure_behaviour, self.torch_answer = ensure, torch_answer
        self.installer = SlicerInstaller(
            testing_enabled=lambda: testing, confirm=self.confirm, pip_install=self.pip_install,
            pip_ensure=self.pip_ensure if ensure is not None else None,
            install_torch=self.install_torch if torch_answer is not None else None)

    def confirm(self, question: str) -> bool:
        self.calls.append(("confirm", question))
        return self.answer

    def _install(self, specifiers: list[str]) -> None:
        if self.pip_error is not None:
            raise self.pip_error
        for specifier in specifiers:
            name = re.split(r"[<>=!~ ]", specifier, maxsplit=1)[0]
            info = self.installs_into / f"{name.replace('-', '_')}-1.0.dist-info"
            info.mkdir(parents=True)
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")

    def pip_install(self, specifiers: list[str]) -> None:
        self.calls.append(("pip_install", tuple(specifiers)))
        self._install(specifiers)

    def pip_ensure(self, specifiers: list[str], requester: str = "") -> None:
        self.calls.append(("pip_ensure", tuple(specifiers), requester))
        if self.ensure_behaviour == "decline":
            raise RuntimeError("User declined package installation")
        self._install(specifiers)

    def install_torch(self, specifier: str) -> bool:
        self.calls.append(("install_torch", specifier))
        return bool(self.torch_answer)
