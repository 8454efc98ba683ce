"""The backend's Python packages in Slicer's Python: checked by version, installed only when the user agrees.

The backend runs with Slicer's Python (``PythonSlicer``), so torch, safetensors and edt
must be installed there; Slicer ships numpy and SimpleITK itself. ``Resources/requirements.txt``
lists what is needed. Checking reads installed versions from package metadata
(``importlib.metadata``) and imports nothing, so the panel stays fast and torch is never
loaded into Slicer's own process (the backend imports it, in its own process).

Installing, in this order of preference:

1. torch through the PyTorch extension (``PyTorchUtils``, a dependency of this extension)
   when it is installed: it picks the CUDA or CPU build that fits the computer's GPU driver
   and asks the user itself;
2. everything still missing through ``slicer.packaging.pip_ensure`` (Slicer 5.9 and later),
   which asks the user, installs with a progress dialog and offers a restart;
3. otherwise ``slicer.util.pip_install`` after asking the user with ``confirm``.

The versions are checked again afterwards; if something is still missing the user gets
one sentence that says what and how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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


def _install_torch_with_pytorch_extension(torch_requirement: Requirement) -> bool | None:
    """Install torch with the PyTorch extension; None when that extension is not installed,
    False when the user declined."""
    try:
        import PyTorchUtils  # the PyTorch extension's module (EXTENSION_DEPENDS PyTorch)
    except ImportError:
        return None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=True, torchVersionRequirement=torch_requirement.specifier or None)
    return torch is not None


def ensure_backend_dependencies(
    requirements_path: str | Path,
    confirm: Callable[[str], bool],
) -> bool:
    """Make sure Slicer's Python has the backend's packages; True when they are all there.

    Returns False when the user declined an installation. Raises :class:`DependencyError`
    when packages are still missing after installing. Call inside Slicer only (it uses
    ``slicer.util`` / ``slicer.packaging`` to install); ``confirm`` asks the user a question.
    """
    requirements = read_requirements(requirements_path)
    unmet = unmet_requirements(requirements)
    if not unmet:
        return True

    import slicer

    torch_unmet = [item for item in unmet if item.requirement.name.lower() == "torch"]
    if torch_unmet:
        installed = _install_torch_with_pytorch_extension(torch_unmet[0].requirement)
        if installed is False:
            return False
        unmet = unmet_requirements(requirements)

    if unmet:
        specifiers = [str(item.requirement) for item in unmet]
        try:
            import slicer.packaging as slicer_packaging
        except ImportError:
            slicer_packaging = None
        if slicer_packaging is not None and hasattr(slicer_packaging, "pip_ensure"):
            slicer_packaging.pip_ensure(specifiers, requester=REQUESTER)
        else:
            question = (f"MultiModalSeg needs these Python packages in Slicer: {describe_unmet(unmet)}. "
                        "Download and install them now? This can take several minutes (torch is large).")
            if not confirm(question):
                return False
            slicer.util.pip_install(specifiers)

    still_unmet = unmet_requirements(requirements)
    if still_unmet:
        raise DependencyError(
            f"These Python packages are still missing or too old: {describe_unmet(still_unmet)}; install them "
            "from Slicer's Python console with slicer.util.pip_install(...) or the PyTorch Utils module, then "
            "restart Slicer.")
    return True
