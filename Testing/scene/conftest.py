"""Fixtures for the headless scene-logic tests: a fresh Slicer context and a fake result folder.

The tests run on the real MRML classes of the ``slicer-core`` wheel. What stands in for
something that cannot run here: the Slicer application itself (replaced by
:func:`create_headless_slicer`, built from the same logics) and a real ``predict`` run
(replaced by :mod:`scene_fake_result`: made-up arrays written by the backend's own
result writer; `test_scene_real_predict.py` loads a real predict's folder too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before VTK creates a render window: EGL directly, without VTK's failing X11 attempt.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

REPOSITORY = Path(__file__).resolve().parents[2]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

import pytest
from scene_fake_result import write_fake_result

from MultiModalSeg.MultiModalSegSceneLib.headless import SlicerContext, create_headless_slicer


@pytest.fixture()
def slicer_context() -> SlicerContext:
    """A new headless scene and application logic for each test."""
    return create_headless_slicer()


@pytest.fixture(scope="session")
def fake_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One fake predict output folder for the session (tests only read it)."""
    return write_fake_result(tmp_path_factory.mktemp("fake-predict"))
