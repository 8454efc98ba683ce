"""The backend's Python packages in Slicer's Python: checked by version, installed only when the user agrees.

The backend runs with Slicer's Python (``PythonSlicer``), so torch, safetensors, edt and scipy
must be installed there; Slicer ships numpy and SimpleITK itself. ``Resources/requirements.txt``
lists what is needed.

What is loaded where: *checking* reads installed versions from package metadata
(``importlib.metadata``) and imports nothing. *Installing torch through the PyTorch extension*
does load torch into Slicer's own process: ``PyTorchUtilsLogic.installTorch`` ends with
``import torch`` and returns the module. Nothing in the module uses it there (segmentation and
fine-tuning import torch in the backend process), but it stays in Slicer's memory until Slicer
restarts, and upgrading torch later needs a restart. Where torch is installed otherwise (pip),
it is not imported into Slicer.

Installing, in this order:

1. torch through the PyTorch extension (``PyTorchUtils``, a dependency of this extension) when
   it is installed: it picks the CUDA or CPU build that fits the computer's GPU driver and asks
   the user itself;
2. everything still missing through ``slicer.packaging.pip_ensure`` (Slicer 5.12 and later),
   which asks, installs with a progress dialog and offers a restart; it raises ``RuntimeError``
   when the user declines and ``subprocess.CalledProcessError`` when pip fails;
3. on Slicer 5.10, which has no ``slicer.packaging``: a question (``confirm``), then
   ``slicer.util.pip_install``, which raises ``CalledProcessError`` when pip fails.

In testing mode (``slicer.app.testingEnabled()``) nothing is installed: ``pip_ensure`` skips
installing there, and ``PyTorchUtils`` would install without asking, so neither is called; the
self-test skips with the outcome's sentence instead. Every outcome is one sentence for the panel:
:class:`DependencyOutcome` (ready, declined, missing in testing mode) or :class:`DependencyError`
(installing failed, or something is still missing afterwards).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "Requirement",
    "UnmetRequirement",
    "DependencyError",
    "read_requirements",
    "installed_version",
    "version_satisfies",
    "unmet_requirements",
    "describe_unmet",
    "DependencyState",
    "DependencyOutcome",
    "SlicerInstaller",
    "slicer_installer",
    "ensure_backend_dependencies",
]

REQUESTER = "MultiModalSeg"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


class DependencyError(RuntimeError):
    """A needed package is missing or too old and was not installed; the message says what to do."""


@dataclass(frozen=True)
class Requirement:
    """One line of a requirements file: ``name`` and a version specifier such as ``>=2.1,<3``."""

    name: str
    specifier: str = ""
    marker: str = ""

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


@dataclass(frozen=True)
class UnmetRequirement:
    """A requirement and the version installed now (None: not installed)."""

    requirement: Requirement
    installed: str | None

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.requirement.name} (not installed)"
        return f"{self.requirement.name} {self.installed} (needs {self.requirement.specifier})"


def _packaging() -> Any:
    """The ``packaging`` library (Slicer ships it; pip vendors a copy, used if it is missing)."""
    for root in ("packaging", "pip._vendor.packaging"):
        try:
            for part in ("markers", "specifiers", "version"):
                importlib.import_module(f"{root}.{part}")
            return importlib.import_module(root)
        except ImportError:
            continue
    raise DependencyError("Python's 'packaging' library is missing; reinstall Slicer.")


def read_requirements(path: str | Path) -> list[Requirement]:
    """Parse a requirements file: ``name[extras] specifier ; marker`` per line; comments, blank
    lines and pip options (``-r``, ``--index-url``) are skipped. Lines whose environment marker
    does not apply here are left out."""
    requirements = []
    for raw_line in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement_text, _, marker = line.partition(";")
        match = _NAME.match(requirement_text)
        if match is None:
            raise ValueError(f"Cannot read the requirement '{raw_line.strip()}' in {path}.")
        marker = marker.strip()
        if marker and not _packaging().markers.Marker(marker).evaluate():
            continue
        requirements.append(Requirement(name=match.group(1), specifier=match.group(3).replace(" ", ""), marker=marker))
    return requirements


def installed_version(distribution_name: str) -> str | None:
    """The installed version of a distribution, None if it is not installed."""
    try:
        return importlib.metadata.version(distribution_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_satisfies(version: str, specifier: str) -> bool:
    """True if ``version`` meets ``specifier`` (local builds such as ``2.5.1+cu121`` count as 2.5.1)."""
    if not specifier:
        return True
    packaging = _packaging()
    try:
        return packaging.specifiers.SpecifierSet(specifier).contains(packaging.version.Version(version),
                                                                      prereleases=True)
    except (packaging.version.InvalidVersion, packaging.specifiers.InvalidSpecifier):
        return False


def unmet_requirements(requirements: Iterable[Requirement]) -> list[UnmetRequirement]:
    """The requirements that are not installed, or installed in a version outside their range."""
    unmet = []
    for requirement in requirements:
        version = installed_version(requirement.name)
        if version is None or not version_satisfies(version, requirement.specifier):
            unmet.append(UnmetRequirement(requirement, version))
    return unmet


def describe_unmet(unmet: Sequence[UnmetRequirement]) -> str:
    """``torch (not installed), edt 2.1 (needs >=2.3)``."""
    return ", ".join(item.describe() for item in unmet)


class DependencyState(str, Enum):
    READY = "ready"
    DECLINED = "declined"
    MISSING_IN_TESTING = "missing in testing mode"


@dataclass(frozen=True)
class DependencyOutcome:
    """Whether the backend can run; ``message`` is the sentence for the panel (empty when ready)."""

    state: DependencyState
    message: str = ""

    @property
    def ready(self) -> bool:
        return self.state == DependencyState.READY


@dataclass
class SlicerInstaller:
    """What installing needs from Slicer, so the order above runs (and is tested) without the application.

    ``pip_ensure``: ``slicer.packaging.pip_ensure`` (None on Slicer 5.10). ``install_torch``: the
    PyTorch extension's installer, taking a version specifier and returning False when the user
    declined (None when the extension is not installed).
    """

    testing_enabled: Callable[[], bool]
    confirm: Callable[[str], bool]
    pip_install: Callable[[list[str]], Any]
    pip_ensure: Callable[..., Any] | None = None
    install_torch: Callable[[str], bool] | None = None


def _install_torch_with_pytorch_extension(specifier: str) -> bool:
    """``PyTorchUtilsLogic.installTorch``: asks, installs the build for this computer's GPU driver,
    and imports torch into Slicer's process (it returns the module; None when the user declined)."""
    import PyTorchUtils  # the PyTorch extension's module (EXTENSION_DEPENDS PyTorch)

    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                           torchVersionRequirement=specifier or None)
    return torch is not None


def slicer_installer(confirm: Callable[[str], bool]) -> SlicerInstaller:
    """The installer of the running Slicer (call inside Slicer only)."""
    import importlib.util

    import slicer

    try:
        import slicer.packaging as slicer_packaging  # Slicer 5.12+
    except ImportError:
        slicer_packaging = None
    return SlicerInstaller(
        testing_enabled=lambda: bool(slicer.app.testingEnabled()),
        confirm=confirm,
        pip_install=slicer.util.pip_install,
        pip_ensure=getattr(slicer_packaging, "pip_ensure", None),
        install_torch=(_install_torch_with_pytorch_extension if importlib.util.find_spec("PyTorchUtils") else None),
    )


def _declined(unmet: Sequence[UnmetRequirement]) -> DependencyOutcome:
    return DependencyOutcome(DependencyState.DECLINED, (
        f"Not started: MultiModalSeg needs {describe_unmet(unmet)} in Slicer's Python and the installation was "
        "declined; press the button again to be asked again."))


def _install_failed(what: str, error: Exception) -> DependencyError:
    code = getattr(error, "returncode", None)
    how = f"pip stopped with exit code {code}" if code is not None else str(error)
    return DependencyError(f"Installing {what} failed ({how}); see the Python console, check the internet "
                           "connection and free disk space, then press the button again.")


def ensure_backend_dependencies(requirements_path: str | Path, installer: SlicerInstaller) -> DependencyOutcome:
    """Make sure Slicer's Python has the backend's packages (see the module docstring for the order).

    Returns the outcome; raises :class:`DependencyError` when installing failed or left something missing.
    """
    requirements = read_requirements(requirements_path)
    unmet = unmet_requirements(requirements)
    if not unmet:
        return DependencyOutcome(DependencyState.READY)
    if installer.testing_enabled():
        return DependencyOutcome(DependencyState.MISSING_IN_TESTING, (
            f"Testing mode installs nothing, and Slicer's Python lacks {describe_unmet(unmet)}; install them "
            "first (start Slicer without testing and press Apply) to run this test."))

    torch_unmet = [item for item in unmet if item.requirement.name.lower() == "torch"]
    if torch_unmet and installer.install_torch is not None:
        try:
            installed = installer.install_torch(torch_unmet[0].requirement.specifier)
        except (subprocess.CalledProcessError, OSError, RuntimeError) as error:
            raise _install_failed("torch (PyTorch extension)", error) from error
        if not installed:
            return _declined(unmet)
        unmet = unmet_requirements(requirements)

    if unmet:
        specifiers = [str(item.requirement) for item in unmet]
        try:
            if installer.pip_ensure is not None:
                try:
                    installer.pip_ensure(specifiers, requester=REQUESTER)
                except RuntimeError as error:
                    if "declin" in str(error).lower():  # pip_ensure: "User declined package installation"
                        return _declined(unmet)
                    raise
            else:
                question = (f"MultiModalSeg needs these Python packages in Slicer: {describe_unmet(unmet)}. "
                            "Download and install them now? This can take several minutes (torch is large).")
                if not installer.confirm(question):
                    return _declined(unmet)
                installer.pip_install(specifiers)
        except (subprocess.CalledProcessError, OSError, RuntimeError) as error:
            raise _install_failed(", ".join(specifiers), error) from error

    still_unmet = unmet_requirements(requirements)
    if still_unmet:
        raise DependencyError(
            f"These Python packages are still missing or too old: {describe_unmet(still_unmet)}; restart Slicer, "
            "or install them from Slicer's Python console with slicer.util.pip_install(...).")
    return DependencyOutcome(DependencyState.READY)
