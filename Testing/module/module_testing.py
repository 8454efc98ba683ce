"""Paths and a tiny model manifest shared by the module tests (imported by name: ``module_testing``).

Kept out of ``conftest.py`` because several test folders have a ``conftest`` module, and a test
importing ``conftest`` could get another folder's.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

MODULE_DIR = REPOSITORY / "MultiModalSeg"
MODULE_SCRIPT = MODULE_DIR / "MultiModalSeg.py"
MODULE_LIB_DIR = MODULE_DIR / "MultiModalSegModuleLib"
UI_FILE = REPOSITORY / "Resources" / "UI" / "MultiModalSeg.ui"
ICON_FILE = REPOSITORY / "Resources" / "Icons" / "MultiModalSeg.png"
FAKE_BACKEND = Path(__file__).resolve().parent / "fake_backend_process.py"
SLICER_CMAKE_STUB = Path(__file__).resolve().parent / "slicer_cmake_stub"

TINY_MODEL_ID = "tiny-maml-ct2"


def tiny_maml_manifest() -> dict:
    """A complete manifest for an untrained two-phase MAML small enough to run in a second."""
    return {
        "id": TINY_MODEL_ID,
        "version": 1,
        "method": "maml",
        "title": "Tiny untrained MAML for tests",
        "modalities": [
            {"name": "arterial", "patterns": ["*art*"], "normalization": "ct"},
            {"name": "venous", "patterns": ["*ven*", "*pv*"], "normalization": "ct"},
        ],
        "reference_modality": "venous",
        "labels": [
            {"value": 1, "name": "liver", "color": [0.86, 0.55, 0.39]},
            {"value": 2, "name": "tumor", "color": [0.9, 0.2, 0.2]},
        ],
        "preprocessing": {},
        "patch_size": [48, 128, 128],
        "supports_missing_modalities": True,
        "provenance": {"data": "none (random weights for tests)"},
    }
