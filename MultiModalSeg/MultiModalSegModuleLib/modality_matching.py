"""Volumes to modalities by the manifest's name patterns; volumes grouped into cases.

The rules live in the backend library, :mod:`MultiModalSegLib.modality_matching`, so the
panel and ``mmseg predict --case`` / ``--data`` match names in one way; this module only
re-exports them under the name the panel has always imported. In a repository clone the
library sits one folder above the module and is put on ``sys.path`` first (see
:mod:`.module_layout`); installed, it sits beside the module and is importable already.
"""

from __future__ import annotations

from .module_layout import ModuleLayoutError, ensure_library_importable, find_module_layout

try:
    ensure_library_importable(find_module_layout())
except ModuleLayoutError:
    pass  # an incomplete layout: the import below then names what is missing

from MultiModalSegLib.modality_matching import *  # noqa: E402,F403 (the library's __all__)
from MultiModalSegLib.modality_matching import __all__  # noqa: E402,F401
