"""The module script without Slicer: it compiles, calls only real ``slicer.util`` functions, says what
it must (title, category, both papers), and its Qt-free half really is free of Qt and torch.

The module file itself imports ``qt`` and ``slicer.ScriptedLoadableModule``, which exist only in
the Slicer application, so it is read here, not imported.
"""

from __future__ import annotations

import ast
import inspect
import py_compile
import re
from pathlib import Path

import pytest
from module_testing import MODULE_LIB_DIR, MODULE_SCRIPT


def module_lib_files() -> list[Path]:
    return sorted(MODULE_LIB_DIR.glob("*.py"))


@pytest.mark.parametrize("path", [MODULE_SCRIPT, *module_lib_files()], ids=lambda p: p.name)
def test_compiles(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_every_slicer_util_function_called_exists_in_slicer_core(module_source: str) -> None:
    import slicer.util

    util_source = Path(inspect.getsourcefile(slicer.util)).read_text(encoding="utf-8")
    defined = {node.name for node in ast.parse(util_source).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    used = set(re.findall(r"\bslicer\.util\.([A-Za-z_][A-Za-z0-9_]*)", module_source))
    used |= {name.strip() for group in re.findall(r"from slicer\.util import ([^\n]+)", module_source)
             for name in group.split(",")}
    assert {"loadUI", "childWidgetVariables", "errorDisplay"} <= used
    missing = sorted(used - defined)
    assert not missing, f"slicer-core's slicer/util.py has no {missing}"


def test_module_description(module_source: str) -> None:
    assert 'self.parent.title = "MultiModalSeg"' in module_source
    assert 'self.parent.categories = ["Segmentation"]' in module_source
    assert "self.parent.contributors" in module_source and "self.parent.helpText" in module_source
    acknowledgement = module_source.split("self.parent.acknowledgementText", 1)[1].split('"""', 2)[1]
    compact = " ".join(acknowledgement.split())
    assert "Modality-aware Mutual Learning for Multi-modal Medical Image Segmentation" in compact
    assert "MICCAI 2021" in compact
    assert "Semi-supervised Medical Image Segmentation through Dual-task Consistency" in compact
    assert "AAAI 2021" in compact


def test_module_has_the_scripted_module_classes_and_self_test(module_source: str) -> None:
    tree = ast.parse(module_source)
    classes = {node.name: [ast.unparse(base) for base in node.bases] for node in tree.body
               if isinstance(node, ast.ClassDef)}
    assert "ScriptedLoadableModule" in classes["MultiModalSeg"]
    assert "ScriptedLoadableModuleWidget" in classes["MultiModalSegWidget"]
    assert "ScriptedLoadableModuleLogic" in classes["MultiModalSegLogic"]
    assert "ScriptedLoadableModuleTest" in classes["MultiModalSegTest"]
    test_methods = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                    and node.name.startswith("test_")}
    assert test_methods == {"test_LoadSampleData", "test_SegmentShowOverlaysFinetuneRollback"}


def test_the_self_test_runs_the_shared_steps(module_source: str) -> None:
    """The Slicer self-test calls the functions that Testing/module/test_module_self_test_steps.py runs."""
    from MultiModalSeg.MultiModalSegModuleLib import self_test_steps

    called = set(re.findall(r"self_test_steps\.([a-z_]+)\(", module_source))
    assert called == {"check_sample_volumes", "choose_model_for_modalities", "segment_case", "show_each_overlay",
                      "finetune_briefly", "roll_back_to_oldest_version"}
    assert called <= set(self_test_steps.__all__)


def test_no_top_level_helper_scripts_beside_the_module() -> None:
    """Slicer loads every .py file in a module folder as a module; helpers must live in packages."""
    assert sorted(p.name for p in MODULE_SCRIPT.parent.glob("*.py")) in (["MultiModalSeg.py"],
                                                                         ["MultiModalSeg.py", "__init__.py"])


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", module_lib_files(), ids=lambda p: p.name)
def test_the_qt_free_half_imports_no_qt_and_no_torch(path: Path) -> None:
    forbidden = {"qt", "ctk", "PythonQt", "PySide6", "torch", "vtk"} & imported_modules(path)
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


def test_the_widget_holds_no_file_format_knowledge(module_source: str) -> None:
    """JSON, NIfTI and subprocesses belong to the Qt-free half; the panel only calls it."""
    imports = imported_modules(MODULE_SCRIPT)
    assert not {"json", "subprocess", "SimpleITK", "numpy", "torch"} & imports
    assert ".nii" not in module_source and "result.json" not in module_source
