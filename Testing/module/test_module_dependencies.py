"""Requirements are read, and checked against installed versions without importing anything."""

from __future__ import annotations

import sys
from pathlib import Path

from module_testing import REPOSITORY

from MultiModalSeg.MultiModalSegModuleLib.dependencies import (
    Requirement,
    describe_unmet,
    installed_version,
    read_requirements,
    unmet_requirements,
    version_satisfies,
)


def test_reading_a_requirements_file(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n--extra-index-url https://example.org\n\ntorch >= 2.1, <3  # CPU or CUDA\n"
                    "safetensors[numpy]>=0.4\nedt\nwinonly>=1 ; sys_platform == 'win32'\n", encoding="utf-8")
    requirements = read_requirements(path)
    expected = [Requirement("torch", ">=2.1,<3"), Requirement("safetensors", ">=0.4"), Requirement("edt", "")]
    if sys.platform == "win32":
        expected.append(Requirement("winonly", ">=1", "sys_platform == 'win32'"))
    assert requirements == expected
    assert str(requirements[0]) == "torch>=2.1,<3"


def test_versions_are_compared_with_local_builds_counting_as_their_release() -> None:
    assert version_satisfies("2.5.1+cu121", ">=2.1,<3")
    assert not version_satisfies("1.13.1", ">=2.1")
    assert not version_satisfies("3.0.0", ">=2.1,<3")
    assert version_satisfies("0.1", "")
    assert not version_satisfies("not a version", ">=1")


def test_this_environment_meets_the_modules_requirements() -> None:
    """The development environment is a stand-in for a Slicer that has everything installed."""
    requirements = read_requirements(REPOSITORY / "Resources" / "requirements.txt")
    assert unmet_requirements(requirements) == []


def test_missing_and_too_old_packages_are_described_in_a_sentence() -> None:
    torch_version = installed_version("torch")
    assert torch_version is not None
    unmet = unmet_requirements([Requirement("torch", ">=999"), Requirement("no-such-package-mmseg", ">=1"),
                                Requirement("safetensors", ">=0.1")])
    assert [item.requirement.name for item in unmet] == ["torch", "no-such-package-mmseg"]
    assert describe_unmet(unmet) == f"torch {torch_version} (needs >=999), no-such-package-mmseg (not installed)"
