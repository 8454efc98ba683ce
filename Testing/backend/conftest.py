"""Fixtures for the backend tests: tiny, untrained but complete model packages on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_packages import make_tiny_dtc, make_tiny_maml, tiny_dtc_manifest, tiny_maml_manifest


@pytest.fixture()
def tiny_maml_package(tmp_path: Path):
    from MultiModalSegLib.weights import save_model_package

    return save_model_package(make_tiny_maml(), tiny_maml_manifest(), tmp_path / "tiny-maml")


@pytest.fixture()
def tiny_dtc_package(tmp_path: Path):
    from MultiModalSegLib.weights import save_model_package

    return save_model_package(make_tiny_dtc(), tiny_dtc_manifest(), tmp_path / "tiny-dtc")
