"""Destinations that really cannot be written, for the tests of issue 11 (imported by name: ``read_only``).

As root, ``chmod a-w`` changes nothing (root writes anyway), so a read-only folder is made one
of two real ways:

* ``under-a-file``: the destination lies below a regular file (``a-file/out``); creating it
  fails with ENOTDIR/EEXIST for any user, on any system;
* ``read-only-mount``: an empty tmpfs mounted read-only (EROFS), where this container allows
  ``mount`` (root on Linux); skipped elsewhere. It is also the destination for a store that
  *exists* but cannot be written.

:class:`Sabotage` makes a destination unwritable while a run is under way (a save that still
fails): it replaces a folder with a regular file at a chosen event.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KINDS = ("under-a-file", "read-only-mount")


def _mount_read_only_tmpfs(folder: Path) -> bool:
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)


@functools.lru_cache(maxsize=1)
def can_mount_read_only() -> bool:
    """Whether a read-only tmpfs can be mounted here (and really refuses writes)."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "probe"
        folder.mkdir()
        if not _mount_read_only_tmpfs(folder):
            return False
        try:
            (folder / "x").write_text("x")
        except OSError:
            return True
        finally:
            _unmount(folder)
        return False


@contextlib.contextmanager
def unwritable_destination(kind: str, base: Path) -> Iterator[Path]:
    """A destination path that cannot be written (see the module docstring); cleans up after itself."""
    if kind == "under-a-file":
        blocker = base / "a-file"
        blocker.write_text("a regular file, not a folder\n")
        yield blocker / "out"
        return
    if kind != "read-only-mount":
        raise ValueError(kind)
    import pytest

    if not can_mount_read_only():
        pytest.skip("this machine cannot mount a read-only tmpfs (needs root on Linux)")
    folder = base / "read-only"
    folder.mkdir()
    assert _mount_read_only_tmpfs(folder)
    try:
        yield folder
    finally:
        _unmount(folder)


class Sabotage(io.StringIO):
    """A stdout stand-in that parses the CLI's JSON lines and, at the first matching event, runs ``action``.

    Used to make a destination unwritable *during* a real run (after the up-front checks passed),
    so that the final save really fails.
    """

    def __init__(self, when: Callable[[dict[str, Any]], bool], action: Callable[[], None]) -> None:
        super().__init__()
        self.when = when
        self.action = action
        self.fired = False

    def write(self, text: str) -> int:
        written = super().write(text)
        for line in text.splitlines():
            if not self.fired and line.startswith("{") and self.when(json.loads(line)):
                self.fired = True
                self.action()
        return written

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.startswith("{")]


def replace_with_file(folder: Path) -> Callable[[], None]:
    """An action: ``folder`` (and what it holds) becomes a regular file, so nothing can be written into it."""

    def act() -> None:
        if folder.is_dir():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_text("no longer a folder\n")

    return act
