"""Where the module finds ``Resources/`` and the backend ``MultiModalSegLib``, cloned or installed.

The same module file runs from two layouts:

Repository clone (Developer > Add module path ``<clone>/MultiModalSeg``)::

    <clone>/MultiModalSeg/MultiModalSeg.py
    <clone>/MultiModalSeg/MultiModalSegModuleLib/, MultiModalSegSceneLib/
    <clone>/MultiModalSegLib/                      one level up
    <clone>/Resources/UI/MultiModalSeg.ui ...      one level up

Installed extension (``MultiModalSeg/CMakeLists.txt`` copies everything beside the module)::

    <extension>/lib/Slicer-X.Y/qt-scripted-modules/MultiModalSeg.py
    .../qt-scripted-modules/MultiModalSegModuleLib/, MultiModalSegSceneLib/, MultiModalSegLib/
    .../qt-scripted-modules/Resources/UI/MultiModalSeg.ui ...

So each is looked for beside the module file first (installed), then one level up (clone).
``MultiModalSegLib.weights.bundled_models_dir()`` resolves ``Resources/Models`` relative to
the library the same way, so both layouts agree on the bundled models. Slicer's own
``ScriptedLoadableModuleWidget.resourcePath`` only knows the installed layout, hence this.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MODULE_NAME",
    "LIBRARY_PACKAGE",
    "UI_FILE",
    "ICON_FILE",
    "REQUIREMENTS_FILE",
    "ModuleLayout",
    "ModuleLayoutError",
    "find_module_layout",
    "ensure_library_importable",
]

MODULE_NAME = "MultiModalSeg"
LIBRARY_PACKAGE = "MultiModalSegLib"
UI_FILE = "UI/MultiModalSeg.ui"
ICON_FILE = "Icons/MultiModalSeg.png"
REQUIREMENTS_FILE = "requirements.txt"

MODULE_DIR = Path(__file__).resolve().parent.parent
"""The folder of ``MultiModalSeg.py`` (this package lives inside it in both layouts)."""


class ModuleLayoutError(RuntimeError):
    """The module's resources or backend library are missing (an incomplete clone or install)."""


@dataclass(frozen=True)
class ModuleLayout:
    """The folders the module needs. ``library_parent_dir`` is the folder that contains
    ``MultiModalSegLib`` (what goes on ``sys.path`` / ``PYTHONPATH``)."""

    module_dir: Path
    resources_dir: Path
    library_parent_dir: Path
    installed: bool

    def resource_path(self, relative: str) -> Path:
        """A file under ``Resources/``, e.g. ``resource_path("UI/MultiModalSeg.ui")``."""
        return self.resources_dir / relative

    @property
    def ui_path(self) -> Path:
        return self.resource_path(UI_FILE)

    @property
    def icon_path(self) -> Path:
        return self.resource_path(ICON_FILE)

    @property
    def requirements_path(self) -> Path:
        return self.resource_path(REQUIREMENTS_FILE)

    @property
    def models_dir(self) -> Path:
        return self.resources_dir / "Models"

    @property
    def sample_data_dir(self) -> Path:
        return self.resources_dir / "SampleData"


def _candidates(module_dir: Path) -> tuple[Path, Path]:
    return (module_dir, module_dir.parent)


def find_module_layout(module_dir: str | Path | None = None) -> ModuleLayout:
    """Find ``Resources/`` and ``MultiModalSegLib`` for the module in ``module_dir``.

    Raises :class:`ModuleLayoutError` with a sentence naming what is missing.
    """
    module_dir = Path(module_dir).resolve() if module_dir is not None else MODULE_DIR
    resources_dir = next((base / "Resources" for base in _candidates(module_dir)
                          if (base / "Resources" / UI_FILE).is_file()), None)
    if resources_dir is None:
        raise ModuleLayoutError(
            f"MultiModalSeg cannot find Resources/{UI_FILE} beside {module_dir} or one folder up; "
            "reinstall the extension, or add the 'MultiModalSeg' folder of a complete clone as module path.")
    library_parent = next((base for base in _candidates(module_dir)
                           if (base / LIBRARY_PACKAGE / "__init__.py").is_file()), None)
    if library_parent is None:
        spec = importlib.util.find_spec(LIBRARY_PACKAGE)
        if spec is not None and spec.origin:
            library_parent = Path(spec.origin).resolve().parent.parent  # installed with pip
    if library_parent is None:
        raise ModuleLayoutError(
            f"MultiModalSeg cannot find the backend library {LIBRARY_PACKAGE} beside {module_dir} or one folder "
            "up; reinstall the extension, or use a complete clone of the repository.")
    return ModuleLayout(module_dir=module_dir, resources_dir=resources_dir,
                        library_parent_dir=library_parent, installed=resources_dir.parent == module_dir)


def ensure_library_importable(layout: ModuleLayout) -> None:
    """Put the folder holding ``MultiModalSegLib`` first on ``sys.path`` (a clone must win over
    an older copy installed elsewhere). The module reads manifests in process; the backend
    itself runs in another process with the same folder on its ``PYTHONPATH``."""
    folder = str(layout.library_parent_dir)
    if folder not in sys.path:
        sys.path.insert(0, folder)
