"""The module script without Slicer: it compiles (with the supported Python's grammar), calls only real
``slicer.util`` functions, says what it must (translatable title, category, both papers, supported
versions), lies alone in its folder, and its Qt-free half really is free of Qt and torch.

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
from module_testing import MODULE_DIR, MODULE_LIB_DIR, MODULE_SCRIPT, REPOSITORY

from MultiModalSeg.MultiModalSegModuleLib import supported_versions


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


def _call_name(node: ast.AST) -> str:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else ""


def module_description_assignments(source: str) -> dict[str, ast.AST]:
    """``self.parent.<name> = <value>`` in the module class's ``__init__``."""
    tree = ast.parse(source)
    module_class = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "MultiModalSeg")
    return {target.attr: node.value for node in ast.walk(module_class) if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Attribute)
            and ast.unparse(target.value) == "self.parent"}


def test_module_description_is_translatable_and_names_the_papers_and_versions(module_source: str) -> None:
    """Title, help and acknowledgement go through Slicer's ``_()`` (slicer.i18n.tr), the category through
    ``translate("qSlicerAbstractCoreModule", ...)``, as the 5.10+ templates do."""
    assert "from slicer.i18n import tr as _" in module_source
    assigned = module_description_assignments(module_source)
    for name in ("title", "helpText", "acknowledgementText"):
        assert _call_name(assigned[name]) == "_", f"self.parent.{name} is not wrapped in _()"
        assert isinstance(assigned[name].args[0], ast.Constant), f"lupdate needs a literal in _() for {name}"
    assert assigned["title"].args[0].value == "MultiModalSeg"
    category = assigned["categories"].elts[0]
    assert _call_name(category) == "translate"
    assert [argument.value for argument in category.args] == ["qSlicerAbstractCoreModule", "Segmentation"]
    compact = " ".join(assigned["acknowledgementText"].args[0].value.split())
    assert "Modality-aware Mutual Learning for Multi-modal Medical Image Segmentation" in compact
    assert "MICCAI 2021" in compact
    assert "Semi-supervised Medical Image Segmentation through Dual-task Consistency" in compact
    assert "AAAI 2021" in compact
    help_text = " ".join(assigned["helpText"].args[0].value.split())
    assert supported_versions.supported_versions_sentence() in help_text


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


def test_only_the_module_file_lies_directly_in_the_module_folder() -> None:
    """Slicer's scripted-module factory (qSlicerScriptedLoadableModuleFactory::isValidFile) takes every
    .py (and lone .pyc) file of a module folder as a module: an ``__init__.py`` there made every start
    say "Fail to instantiate module __init__". Helpers live in the Lib packages."""
    assert sorted(p.name for p in MODULE_DIR.iterdir() if p.suffix in (".py", ".pyc")) == ["MultiModalSeg.py"]


def python_sources() -> list[Path]:
    """The module file and every .py of the module's packages and of the backend."""
    return [MODULE_SCRIPT, *sorted(MODULE_DIR.glob("MultiModalSeg*Lib/**/*.py")),
            *sorted((REPOSITORY / "MultiModalSegLib").rglob("*.py"))]


def test_sources_parse_with_the_grammar_of_the_oldest_supported_slicers_python() -> None:
    """Slicer 5.10 and 5.12 both run Python 3.12 (Slicer_REQUIRED_PYTHON_VERSION 3.12.10); nothing may need
    newer grammar. ``feature_version`` makes ``ast`` refuse what that Python could not parse."""
    assert supported_versions.SUPPORTED_PYTHON == (3, 12)
    sources = python_sources()
    assert len(sources) > 80
    for path in sources:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path),
                  feature_version=supported_versions.SUPPORTED_PYTHON)


def test_the_module_refuses_an_older_python_with_a_sentence(module_source: str) -> None:
    """On Slicer 5.8 (Python 3.9) the module stops before importing the packages, saying what to install."""
    ast.parse(module_source, feature_version=(3, 9))  # Slicer 5.8's Python reaches the guard
    guard = module_source.index("if sys.version_info < (3, 11):")
    assert guard < module_source.index("from MultiModalSegModuleLib import")
    assert "supports Slicer 5.10 and 5.12 (Python 3.12)" in module_source[guard:guard + 300]


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


def test_the_widget_is_wiring_between_the_ui_and_the_controller(module_source: str) -> None:
    """The widget calls only what the controller has, shows only what its state has, and holds no rule
    (no matching, no scene logic, no backend): those are tested headless in test_panel_scenarios.py."""
    from MultiModalSeg.MultiModalSegModuleLib.panel_controller import PanelController
    from MultiModalSeg.MultiModalSegModuleLib.panel_state import PanelState

    assert len(module_source.splitlines()) < 896 * 0.45, "the widget file grew back: move behaviour to the controller"
    called = set(re.findall(r"\bcontroller\.([a-z_]+)", module_source))
    assert {"enter", "poll", "apply_or_cancel", "choose_input", "select_overlay", "set_overlay_opacity"} <= called
    assert not [name for name in called if not hasattr(PanelController, name) and name not in ("status",)]
    shown = set(re.findall(r"\bstate\.([a-z_]+)", module_source))
    assert len(shown) > 25 and shown <= set(PanelState.__dataclass_fields__)
    rules = {"input_selection", "modality_matching", "backend_jobs", "finetune_cases", "slice_layers", "overlays"}
    assert not rules & imported_names(MODULE_SCRIPT)


def imported_names(path: Path) -> set[str]:
    """Every module name imported (``from a.b import c`` gives a, b and c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= set(node.module.split(".")) | {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {part for alias in node.names for part in alias.name.split(".")}
    return names
