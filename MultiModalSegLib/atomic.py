"""Atomic file writes: a file appears under its final name complete, or not at all.

A process killed at any moment (Slicer's Cancel, SIGKILL, a full disk) must never leave a
half-written model package, checkpoint or image under the name a reader looks for. Every
writer in the backend writes to a temporary file in the same folder, flushes and fsyncs it,
then ``os.replace``s it onto the final name (atomic on POSIX and on Windows for one volume).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMPORARY_MARKER = ".tmp-"


def _full_suffix(path: Path) -> str:
    """``.nii.gz`` for ``x.nii.gz``: writers such as SimpleITK choose their format by it."""
    suffixes = path.suffixes
    if len(suffixes) >= 2 and suffixes[-1] == ".gz":
        return "".join(suffixes[-2:])
    return path.suffix


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(folder: Path) -> None:
    """Persist the rename itself (POSIX only; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write_path(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final_path``; on success move it into place.

    The temporary name starts with a dot, contains ``.tmp-`` and keeps the final suffix
    (``.x.tmp-ab12.nii.gz``), so format-sniffing writers work and leftover files are easy to
    find. On an exception the temporary file is removed and ``final_path`` is untouched.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = _full_suffix(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name[: len(final.name) - len(suffix)] or 'file'}{TEMPORARY_MARKER}",
                                    suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the permissions a plain open() would (umask).
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_directory(final.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(final_path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final_path`` atomically and return the path."""
    with atomic_write_path(final_path) as tmp:
        tmp.write_bytes(data)
    return Path(final_path)


def atomic_write_text(final_path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``final_path`` atomically and return the path."""
    return atomic_write_bytes(final_path, text.encode("utf-8"))


def atomic_write_json(final_path: str | os.PathLike[str], value: Any) -> Path:
    """Write ``value`` as indented JSON atomically and return the path."""
    return atomic_write_text(final_path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def process_is_running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a staging folder named by its pid may still be written)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: leave its files alone
    return True


def leftover_temporary_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that an interrupted writer left in ``folder`` (recursively)."""
    return sorted(p for p in Path(folder).rglob(f"*{TEMPORARY_MARKER}*") if p.is_file())
