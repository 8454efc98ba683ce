"""The backend's command lines, the Python that runs them, and their environment.

Every run is ``<python> -m MultiModalSegLib <verb> ...`` (the CLI of ``MultiModalSegLib/cli.py``
and ``MultiModalSegLib/training/cli_verbs.py``). Inside Slicer ``<python>`` is Slicer's own
Python, ``PythonSlicer`` (on ``PATH`` inside the application, as ``slicer.util.pip_install``
finds it), so the backend sees the packages installed into Slicer; ``sys.executable`` there
is the application itself and must not be used. Outside Slicer (tests, scripts) it is
``sys.executable``.

The environment puts the folder that holds ``MultiModalSegLib`` first on ``PYTHONPATH``,
asks for unbuffered UTF-8 output (progress must arrive as it happens), and may point the
backend at another model store or bundled-model folder (``MMSEG_MODEL_STORE``,
``MMSEG_BUNDLED_MODELS``): the self-tests use a temporary store, so they never change the
user's model versions.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEVICES",
    "BackendSettings",
    "slicer_python_executable",
    "predict_arguments",
    "finetune_arguments",
    "versions_arguments",
    "rollback_arguments",
]

DEVICES = ("auto", "cpu", "cuda")
"""What the panel offers; the backend also takes ``cuda:N``."""


def _inside_slicer_application() -> bool:
    slicer = sys.modules.get("slicer")
    return slicer is not None and hasattr(slicer, "app")


def slicer_python_executable() -> str:
    """The Python to run the backend with: ``PythonSlicer`` inside Slicer, else ``sys.executable``."""
    if _inside_slicer_application():
        found = shutil.which("PythonSlicer")
        if found:
            return found
        beside = Path(sys.executable).with_name("PythonSlicer" + (".exe" if os.name == "nt" else ""))
        if beside.is_file():
            return str(beside)
        raise FileNotFoundError(
            "Slicer's Python (PythonSlicer) was not found on PATH; reinstall Slicer or start it from its launcher.")
    return sys.executable


@dataclass
class BackendSettings:
    """How to start the backend: which Python, where the library is, which model folders.

    ``model_store``: the user model store (``MMSEG_MODEL_STORE``), None for the backend's
    default. ``bundled_models``: the bundled packages (``MMSEG_BUNDLED_MODELS``), None for
    ``Resources/Models`` beside the library. ``work_parent``: where temporary run folders
    go, None for the system temporary folder.
    """

    library_parent_dir: Path
    python_executable: str = field(default_factory=slicer_python_executable)
    model_store: Path | None = None
    bundled_models: Path | None = None
    work_parent: Path | None = None
    extra_environment: Mapping[str, str] = field(default_factory=dict)

    def command(self, arguments: Sequence[str]) -> list[str]:
        """``[python, -m, MultiModalSegLib, *arguments]``."""
        return [self.python_executable, "-m", "MultiModalSegLib", *[str(argument) for argument in arguments]]

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The backend's environment: ``base`` (default ``os.environ``) plus what the backend needs."""
        environment = dict(os.environ if base is None else base)
        python_path = [str(self.library_parent_dir)]
        if environment.get("PYTHONPATH"):
            python_path.append(environment["PYTHONPATH"])
        environment["PYTHONPATH"] = os.pathsep.join(python_path)
        environment["PYTHONUNBUFFERED"] = "1"
        environment["PYTHONIOENCODING"] = "utf-8"
        if self.model_store is not None:
            environment["MMSEG_MODEL_STORE"] = str(self.model_store)
        if self.bundled_models is not None:
            environment["MMSEG_BUNDLED_MODELS"] = str(self.bundled_models)
        environment.update(self.extra_environment)
        return environment


def _check_device(device: str) -> str:
    device = (device or "auto").strip().lower()
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"Device '{device}' is not one of {', '.join(DEVICES)} (or cuda:N).")
    return device


def predict_arguments(
    model: str,
    inputs: Mapping[str, str | Path],
    output_dir: str | Path,
    device: str = "auto",
    overlap: float = 0.5,
) -> list[str]:
    """``predict --model M --input name=path ... --output DIR --device D --overlap O``."""
    if not inputs:
        raise ValueError("predict needs at least one input image.")
    arguments = ["predict", "--model", str(model)]
    for modality, path in inputs.items():
        arguments += ["--input", f"{modality}={path}"]
    arguments += ["--output", str(output_dir), "--device", _check_device(device), "--overlap", f"{float(overlap):g}"]
    return arguments


def finetune_arguments(
    model: str,
    labeled_cases: str | Path,
    output_dir: str | Path,
    unlabeled_cases: str | Path | None = None,
    iterations: int | None = None,
    device: str = "auto",
    patch_size: tuple[int, int, int] | None = None,
) -> list[str]:
    """``finetune --model M --labeled cases.json [--unlabeled cases.json] --output DIR ...``.

    ``patch_size`` (z, y, x) overrides the package's training patch (the self-tests use a small one).
    """
    arguments = ["finetune", "--model", str(model), "--labeled", str(labeled_cases)]
    if unlabeled_cases is not None:
        arguments += ["--unlabeled", str(unlabeled_cases)]
    arguments += ["--output", str(output_dir), "--device", _check_device(device)]
    if iterations is not None:
        arguments += ["--iterations", str(int(iterations))]
    if patch_size is not None:
        arguments += ["--patch", "x".join(str(int(size)) for size in patch_size)]
    return arguments


def versions_arguments(model_id: str | None = None) -> list[str]:
    """``models --versions [ID] --json``: one ``model_version`` event per version."""
    return ["models", "--versions", model_id, "--json"] if model_id else ["models", "--versions", "--json"]


def rollback_arguments(model_id: str, version: int) -> list[str]:
    """``models --rollback ID VERSION``: make an earlier version current again."""
    return ["models", "--rollback", str(model_id), str(int(version))]
