"""The one place that imports the scene logic, whose package name depends on the layout.

Inside Slicer the module's folder is on ``sys.path`` and the scene logic is the top-level
package ``MultiModalSegSceneLib``; from the repository (pytest) both packages are
subpackages of ``MultiModalSeg``. The other modules here import scene-logic functions from
this module, so that difference is handled once. Nothing is re-implemented here.
"""

from __future__ import annotations

try:  # repository / pytest: MultiModalSeg.MultiModalSegModuleLib -> MultiModalSeg.MultiModalSegSceneLib
    from ..MultiModalSegSceneLib import (
        errors,
        finetune_export,
        headless,
        node_roles,
        overlays,
        result_loader,
        slice_layers,
        slice_views,
        volume_files,
    )
except ImportError:  # Slicer: both are top-level packages beside MultiModalSeg.py
    from MultiModalSegSceneLib import (  # type: ignore[no-redef]
        errors,
        finetune_export,
        headless,
        node_roles,
        overlays,
        result_loader,
        slice_layers,
        slice_views,
        volume_files,
    )

__all__ = [
    "errors",
    "finetune_export",
    "headless",
    "node_roles",
    "overlays",
    "result_loader",
    "slice_layers",
    "slice_views",
    "volume_files",
]
