"""The developer's Reload reloads the module's packages, not only ``MultiModalSeg.py``.

Slicer's ``reloadScriptedModule`` re-executes the module file; without forgetting the packages its
imports return the modules already loaded, so an edited controller changed nothing. The forgetting is
run here on a real package written to disk and edited between two imports.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
from module_testing import MODULE_SCRIPT

from MultiModalSeg.MultiModalSegModuleLib import module_reload


@pytest.fixture()
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "mmseg_reload_probe"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "inner" / "__init__.py").write_text("", encoding="utf-8")
    (package / "inner" / "rules.py").write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    module_reload.forget_packages(["mmseg_reload_probe"])


def test_an_edited_submodule_is_read_again_after_forgetting_its_package(probe_package: Path) -> None:
    assert importlib.import_module("mmseg_reload_probe.inner.rules").VALUE == 1
    (probe_package / "inner" / "rules.py").write_text("VALUE = 2\n", encoding="utf-8")
    importlib.invalidate_caches()
    assert importlib.import_module("mmseg_reload_probe.inner.rules").VALUE == 1  # what Reload did before

    removed = module_reload.forget_packages(["mmseg_reload_probe"])
    assert removed == ["mmseg_reload_probe", "mmseg_reload_probe.inner", "mmseg_reload_probe.inner.rules"]
    assert importlib.import_module("mmseg_reload_probe.inner.rules").VALUE == 2
    assert "mmseg_reload_probeX" not in removed and not module_reload.forget_packages(["mmseg_reload_prob"])


def test_on_reload_forgets_every_package_the_module_file_imports_before_slicers_reload() -> None:
    tree = ast.parse(MODULE_SCRIPT.read_text(encoding="utf-8"))
    imported = {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    ours = {name for name in imported if name.startswith("MultiModalSeg")}
    assert ours == {"MultiModalSegModuleLib"}  # which imports the scene logic and, in the controller, the backend
    assert ours <= set(module_reload.RELOADED_PACKAGES)
    assert {"MultiModalSegSceneLib", "MultiModalSegLib"} <= set(module_reload.RELOADED_PACKAGES)

    widget = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "MultiModalSegWidget")
    on_reload = next(node for node in widget.body if isinstance(node, ast.FunctionDef) and node.name == "onReload")
    calls = [ast.unparse(node.func) for node in ast.walk(on_reload) if isinstance(node, ast.Call)]
    assert calls == ["module_reload.forget_packages", "ScriptedLoadableModuleWidget.onReload"]


def test_forgetting_leaves_other_modules_alone() -> None:
    before = set(sys.modules)
    module_reload.forget_packages(["mmseg_no_such_package"])
    assert set(sys.modules) == before
