"""What the developer's Reload button must forget: the module's packages, not only its main file.

``slicer.util.reloadScriptedModule`` re-executes ``MultiModalSeg.py`` only; its imports of
``MultiModalSegModuleLib``, ``MultiModalSegSceneLib`` and ``MultiModalSegLib`` would return the
modules already in ``sys.modules``, so an edited panel controller or scene-logic file changed
nothing until Slicer restarted. The best Slicer AI extensions reload their Lib packages in
``onReload``; here the packages are dropped from ``sys.modules`` first, so the module file's own
imports load every file afresh, in dependency order, with no list of submodules to keep up to date.
(``imp``, which some extensions use for this, is gone from Python 3.12.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

__all__ = ["RELOADED_PACKAGES", "forget_packages"]

RELOADED_PACKAGES = ("MultiModalSegModuleLib", "MultiModalSegSceneLib", "MultiModalSegLib")


def forget_packages(packages: Iterable[str] = RELOADED_PACKAGES) -> list[str]:
    """Remove ``packages`` and their submodules from ``sys.modules``; returns the names removed.

    The next import of any of them reads its files again. Objects made from the old modules
    keep working (they hold their own references), which is why the old widget is cleaned up
    by Slicer's reload before the new one is made.
    """
    prefixes = tuple(packages)
    removed = [name for name in list(sys.modules)
               if name in prefixes or name.startswith(tuple(f"{package}." for package in prefixes))]
    for name in removed:
        del sys.modules[name]
    return sorted(removed)
