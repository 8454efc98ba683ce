"""A result folder that is complete or absent: written in a hidden staging folder, committed at the end.

``predict`` writes half a dozen large NIfTI files. A run killed half-way (Slicer's Cancel, SIGKILL,
a full disk) must never leave a folder that looks like a finished result, and ``--overwrite``
must not leave files of the earlier run beside the new ones (a venous-only run once kept the
earlier run's ``attention_arterial.nii.gz``). So:

* the files go to a staging folder first: a hidden sibling ``.<name>.tmp-<pid>-XXXX`` when the
  output does not exist yet, or a hidden ``.staging.tmp-<pid>-XXXX`` inside an existing output
  folder (the same file system either way, so the moves below are renames);
* :meth:`StagedOutput.commit` is the commit point. A new output: the staging folder is renamed
  onto it in one step. An existing folder: the earlier run's ``result.json`` is removed first
  (from then on the folder does not look complete), then the earlier run's files (those its
  ``result.json`` lists, and any file named like a ``predict`` output), then the new files are
  moved in with ``result.json`` last. Files of the user's own that no run wrote are kept;
* leaving the ``with`` block without a commit (an error, a cancel) removes the staging folder, so
  the output is exactly as before. A SIGKILL leaves only the hidden staging folder, which the
  next run into the same output removes once its process is gone.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from MultiModalSegLib.atomic import TEMPORARY_MARKER, fsync_directory, process_is_running

RESULT_FILE = "result.json"
INSIDE_PREFIX = f".staging{TEMPORARY_MARKER}"
OUTPUT_PATTERNS = ("labelmap.nii.gz", "probability_*.nii.gz", "attention_*.nii.gz", "level_set_*.nii.gz",
                   "uncertainty.nii.gz", f".*{TEMPORARY_MARKER}*")
"""Names ``predict`` writes (``PredictionResult.write``) and its temporary files: an earlier run's files."""


def _sibling_prefix(output: Path) -> str:
    return f".{output.name}{TEMPORARY_MARKER}"


def _staging_pid(name: str, prefix: str) -> int | None:
    match = re.match(rf"^{re.escape(prefix)}(\d+)-", name)
    return int(match.group(1)) if match else None


def remove_stale_staging(output: str | os.PathLike[str]) -> list[Path]:
    """Remove staging folders that killed runs left for ``output`` (their process is gone); return them."""
    output = Path(output)
    candidates: list[tuple[Path, str]] = []
    if output.parent.is_dir():
        candidates += [(p, _sibling_prefix(output)) for p in output.parent.glob(f"{_sibling_prefix(output)}*")]
    if output.is_dir():
        candidates += [(p, INSIDE_PREFIX) for p in output.glob(f"{INSIDE_PREFIX}*")]
    removed = []
    for path, prefix in candidates:
        pid = _staging_pid(path.name, prefix)
        if path.is_dir() and pid is not None and not process_is_running(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def earlier_run_files(output: Path) -> list[Path]:
    """Files of an earlier run in ``output``: its ``result.json`` first, then what it lists, then predict's names."""
    result = output / RESULT_FILE
    names: list[str] = []
    try:
        listed = json.loads(result.read_text(encoding="utf-8")).get("files", [])
        names = [str(n) for n in listed if isinstance(n, str) and Path(n).name == n and n not in ("", ".", "..")]
    except (OSError, ValueError, AttributeError):
        pass
    found = [result] if result.is_file() else []
    for path in sorted(output.iterdir()):
        if path == result or not path.is_file() or path.name.startswith(INSIDE_PREFIX):
            continue
        if path.name in names or any(fnmatch.fnmatch(path.name, pattern) for pattern in OUTPUT_PATTERNS):
            found.append(path)
    return found


@dataclass
class StagedOutput:
    """The staging folder of one run and the output it will become (see the module docstring)."""

    output: Path
    folder: Path
    committed: bool = False

    def commit(self) -> None:
        """Make the staged files the output (the commit point); the staging folder is gone afterwards."""
        for path in self.folder.iterdir():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
        if not self.output.exists():
            os.replace(self.folder, self.output)
            fsync_directory(self.output.parent)
        else:
            for earlier in earlier_run_files(self.output):  # result.json first
                earlier.unlink(missing_ok=True)
            staged = sorted(self.folder.iterdir(), key=lambda p: (p.name == RESULT_FILE, p.name))
            for path in staged:  # result.json last
                os.replace(path, self.output / path.name)
            self.folder.rmdir()
            fsync_directory(self.output)
        self.committed = True


@contextlib.contextmanager
def staged_output_folder(output: str | os.PathLike[str]) -> Iterator[StagedOutput]:
    """Yield a :class:`StagedOutput`; call its ``commit()`` inside the block, or nothing reaches ``output``."""
    output = Path(output)
    remove_stale_staging(output)
    if output.is_dir():
        parent, prefix = output, INSIDE_PREFIX
    else:
        parent, prefix = output.parent, _sibling_prefix(output)
        parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    staged = StagedOutput(output=output, folder=staging)
    try:
        yield staged
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
