"""Fixtures for the module tests: the module's source and a tiny model package.

These tests check the Slicer module's files (the .ui, the module script, the CMake files,
the icon) and run its Qt-free half (``MultiModalSegModuleLib``) for real: the process runner
with real subprocesses, the backend jobs with the real backend CLI on a tiny untrained model,
the self-test steps on a headless ``slicer-core`` scene. What stands in for what cannot run
here: the Slicer application (the headless scene of ``MultiModalSegSceneLib.headless``), the
Slicer widgets of the .ui (PySide6 loads them as plain QWidgets) and Slicer's CMake package
(``slicer_cmake_stub``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from module_testing import MODULE_SCRIPT, TINY_MODEL_ID, tiny_maml_manifest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@pytest.fixture(scope="session")
def module_source() -> str:
    return MODULE_SCRIPT.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_bundled_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundled-models folder holding one tiny MAML package (built once per session)."""
    import torch

    from MultiModalSegLib.models import MAML
    from MultiModalSegLib.weights import save_model_package

    torch.manual_seed(0)
    network = MAML(["arterial", "venous"], 3, base_filters=4, max_filters=8,
                   strides=[(1, 2, 2), (2, 2, 2)], deep_supervision=False)
    folder = tmp_path_factory.mktemp("bundled-models")
    card = "# Tiny MAML\n\nAn untrained two-phase MAML used by the module tests; it segments nothing useful.\n"
    save_model_package(network, tiny_maml_manifest(), folder / TINY_MODEL_ID, model_card=card)
    return folder


@pytest.fixture()
def backend_settings(tmp_path: Path, tiny_bundled_models: Path, monkeypatch: pytest.MonkeyPatch):
    """The backend with the tiny bundled model and an empty temporary model store (in this process too)."""
    import sys

    from module_testing import REPOSITORY

    from MultiModalSeg.MultiModalSegModuleLib.backend_commands import BackendSettings

    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(tiny_bundled_models))
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))
    return BackendSettings(library_parent_dir=REPOSITORY, python_executable=sys.executable,
                           model_store=tmp_path / "store", bundled_models=tiny_bundled_models,
                           work_parent=tmp_path / "work")
