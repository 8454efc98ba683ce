"""The backend's command lines, its environment, and where the module finds its files."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from module_testing import MODULE_DIR, REPOSITORY

from MultiModalSeg.MultiModalSegModuleLib.backend_commands import (
    BackendSettings,
    finetune_arguments,
    predict_arguments,
    rollback_arguments,
    slicer_python_executable,
    versions_arguments,
)
from MultiModalSeg.MultiModalSegModuleLib.module_layout import ModuleLayoutError, find_module_layout


def test_predict_arguments_name_each_modality() -> None:
    arguments = predict_arguments("maml-liver-ct2", {"arterial": Path("/t/a.nii.gz"), "venous": "/t/v.nii.gz"},
                                  "/t/out", device="CUDA", overlap=0.25)
    assert arguments == ["predict", "--model", "maml-liver-ct2", "--input", "arterial=/t/a.nii.gz",
                         "--input", "venous=/t/v.nii.gz", "--output", "/t/out", "--device", "cuda", "--overlap", "0.25"]
    with pytest.raises(ValueError, match="Device 'gpu'"):
        predict_arguments("m", {"a": "x"}, "o", device="gpu")
    with pytest.raises(ValueError, match="at least one input"):
        predict_arguments("m", {}, "o")


def test_finetune_versions_and_rollback_arguments() -> None:
    assert finetune_arguments("m", "/c/labeled.json", "/c/out", unlabeled_cases="/c/unlabeled.json", iterations=50,
                              device="cpu", patch_size=(16, 64, 64)) == [
        "finetune", "--model", "m", "--labeled", "/c/labeled.json", "--unlabeled", "/c/unlabeled.json",
        "--output", "/c/out", "--device", "cpu", "--iterations", "50", "--patch", "16x64x64"]
    assert versions_arguments("m") == ["models", "--versions", "m", "--json"]
    assert versions_arguments() == ["models", "--versions", "--json"]
    assert rollback_arguments("m", 2) == ["models", "--rollback", "m", "2"]


def test_the_environment_finds_the_library_and_the_chosen_model_folders(tmp_path: Path) -> None:
    settings = BackendSettings(library_parent_dir=REPOSITORY, python_executable=sys.executable,
                               model_store=tmp_path / "store", bundled_models=tmp_path / "bundled")
    environment = settings.environment({"PYTHONPATH": "/elsewhere", "PATH": os.environ.get("PATH", "")})
    assert environment["PYTHONPATH"].split(os.pathsep) == [str(REPOSITORY), "/elsewhere"]
    assert environment["MMSEG_MODEL_STORE"] == str(tmp_path / "store")
    assert environment["MMSEG_BUNDLED_MODELS"] == str(tmp_path / "bundled")
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert settings.command(["models"]) == [sys.executable, "-m", "MultiModalSegLib", "models"]


def test_outside_slicer_the_backend_runs_with_this_python() -> None:
    assert slicer_python_executable() == sys.executable


def test_the_repository_layout_is_found_from_the_module_folder() -> None:
    layout = find_module_layout(MODULE_DIR)
    assert not layout.installed
    assert layout.resources_dir == REPOSITORY / "Resources"
    assert layout.library_parent_dir == REPOSITORY
    assert layout.ui_path.is_file() and layout.icon_path.is_file() and layout.requirements_path.is_file()


def test_an_incomplete_install_is_reported_in_a_sentence(tmp_path: Path) -> None:
    module_dir = tmp_path / "qt-scripted-modules"
    module_dir.mkdir()
    with pytest.raises(ModuleLayoutError, match="cannot find Resources/UI/MultiModalSeg.ui"):
        find_module_layout(module_dir)
    shutil.copytree(REPOSITORY / "Resources" / "UI", module_dir / "Resources" / "UI")
    layout = find_module_layout(module_dir)  # the library is found where Python finds it (here: the repository)
    assert layout.installed and layout.resources_dir == module_dir / "Resources"
