"""Requirements are read, checked against installed versions without importing anything, and installed
in the documented order; every outcome is one sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from module_testing import REPOSITORY
from panel_testing import RecordingInstaller

from MultiModalSeg.MultiModalSegModuleLib import dependencies
from MultiModalSeg.MultiModalSegModuleLib.dependencies import (
    DependencyError,
    DependencyState,
    Requirement,
    describe_unmet,
    ensure_backend_dependencies,
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


# -- installing: the order of dependencies.py, against stand-ins that follow Slicer's documented contracts --------
# (slicer.packaging.pip_ensure and slicer.util.pip_install run only inside the Slicer application; see
# panel_testing.RecordingInstaller)

MISSING = "mmseg-test-not-installed"


@pytest.fixture()
def requirements_file(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(f"safetensors>=0.1\n{MISSING}>=1\n", encoding="utf-8")
    return path


def test_nothing_is_asked_when_everything_is_there(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("safetensors>=0.1\n", encoding="utf-8")
    recorder = RecordingInstaller(ensure="install")
    assert ensure_backend_dependencies(path, recorder.installer).state == DependencyState.READY
    assert recorder.calls == []


def test_testing_mode_installs_nothing_and_says_why(requirements_file: Path) -> None:
    """pip_ensure skips installing in testing mode and PyTorchUtils would install without asking: neither runs."""
    recorder = RecordingInstaller(testing=True, ensure="install", torch_answer=True)
    outcome = ensure_backend_dependencies(requirements_file, recorder.installer)
    assert outcome.state == DependencyState.MISSING_IN_TESTING and not outcome.ready
    assert f"{MISSING} (not installed)" in outcome.message and outcome.message.count(". ") == 0
    assert recorder.calls == []


def test_pip_ensure_decline_is_one_sentence(requirements_file: Path) -> None:
    recorder = RecordingInstaller(ensure="decline")
    outcome = ensure_backend_dependencies(requirements_file, recorder.installer)
    assert outcome.state == DependencyState.DECLINED
    assert outcome.message.startswith("Not started:") and MISSING in outcome.message
    assert recorder.calls == [("pip_ensure", (f"{MISSING}>=1",), "MultiModalSeg")]


def test_an_install_failure_is_one_sentence_with_pips_exit_code(requirements_file: Path) -> None:
    recorder = RecordingInstaller(ensure="install", pip_error=subprocess.CalledProcessError(1, ["pip", "install"]))
    with pytest.raises(DependencyError, match=rf"^Installing {MISSING}>=1 failed \(pip stopped with exit code 1\)"):
        ensure_backend_dependencies(requirements_file, recorder.installer)


def test_slicer_5_10_without_pip_ensure_asks_then_installs(requirements_file: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    declined = RecordingInstaller(answer=False)
    assert ensure_backend_dependencies(requirements_file, declined.installer).state == DependencyState.DECLINED
    assert [call[0] for call in declined.calls] == ["confirm"]

    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    accepted = RecordingInstaller(answer=True, installs_into=site)
    assert ensure_backend_dependencies(requirements_file, accepted.installer).ready
    assert [call[0] for call in accepted.calls] == ["confirm", "pip_install"]
    assert installed_version(MISSING) == "1.0"


def test_torch_goes_through_the_pytorch_extension_first(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("torch>=999\n", encoding="utf-8")
    recorder = RecordingInstaller(ensure="install", torch_answer=False)
    outcome = ensure_backend_dependencies(path, recorder.installer)
    assert outcome.state == DependencyState.DECLINED
    assert recorder.calls == [("install_torch", ">=999")]


def test_the_docstring_says_where_torch_is_loaded() -> None:
    """PyTorchUtilsLogic.installTorch ends with ``import torch``: the module must not claim otherwise."""
    text = " ".join(dependencies.__doc__.split())
    assert "never loaded" not in text
    assert "does load torch into Slicer's own process" in text
