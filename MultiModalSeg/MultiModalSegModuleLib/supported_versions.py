"""Which Slicer releases the module supports, and the sentence the panel shows outside them.

Supported: **Slicer 5.10 and 5.12**, both built with **Python 3.12** (``Slicer_REQUIRED_PYTHON_VERSION``
is 3.12.10 at the tags v5.10.0 and v5.12.x). Why not earlier:

* Slicer 5.8 runs Python 3.9; the backend uses ``typing.Self``, ``datetime.UTC`` and ``X | Y``
  unions evaluated at run time (Python 3.11+).
* ``vtkSegment.SetTerminology`` (one terminology string per segment, used by the scene logic's
  segmentation import) was added for 5.10.

``slicer.packaging.pip_ensure`` exists from 5.12.0 only; on 5.10 ``dependencies`` falls back to
asking with a dialog and ``slicer.util.pip_install``. The same facts are stated in
``CMakeLists.txt`` (``find_package(Slicer 5.10 ...)``) and the README; a test keeps them equal.
"""

from __future__ import annotations

__all__ = [
    "SUPPORTED_SLICER_VERSIONS",
    "MINIMUM_SLICER_VERSION",
    "SUPPORTED_PYTHON",
    "supported_versions_sentence",
    "version_note",
]

SUPPORTED_SLICER_VERSIONS: tuple[tuple[int, int], ...] = ((5, 10), (5, 12))
"""Slicer (major, minor) releases this module is written and checked against."""
MINIMUM_SLICER_VERSION = SUPPORTED_SLICER_VERSIONS[0]
SUPPORTED_PYTHON: tuple[int, int] = (3, 12)
"""The Python of every supported Slicer; the sources must parse with this grammar."""


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def supported_versions_sentence() -> str:
    """``Supported: Slicer 5.10 and 5.12 (Python 3.12).``"""
    names = [_text(version) for version in SUPPORTED_SLICER_VERSIONS]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    return f"Supported: Slicer {listed} (Python {_text(SUPPORTED_PYTHON)})."


def version_note(slicer_version: tuple[int, int], python_version: tuple[int, int]) -> str:
    """One sentence for the panel when the running Slicer is not a supported one; empty when it is."""
    running = f"this is Slicer {_text(slicer_version)} with Python {_text(python_version)}"
    if tuple(python_version) < SUPPORTED_PYTHON or tuple(slicer_version) < MINIMUM_SLICER_VERSION:
        return f"{supported_versions_sentence()[:-1]}; {running}: install a supported Slicer."
    if tuple(slicer_version) not in SUPPORTED_SLICER_VERSIONS:
        return f"{supported_versions_sentence()[:-1]}; {running}, which is untested: report what does not work."
    return ""
