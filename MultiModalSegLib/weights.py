"""Model packages: safetensors weights + ``manifest.json`` + ``MODEL_CARD.md``, verified.

A model package is a folder (see docs/architecture.md for the manifest's fields). Loading
never unpickles anything: weights are safetensors, the manifest is JSON. Before a network
is built the loader checks, in this order, and refuses with a sentence that says what to do:

1. the manifest is valid JSON with the required fields and a known method;
2. the weights file exists and its sha256 equals the manifest's (a flipped byte or a
   truncated download is caught here);
3. the tensors in the file have exactly the names and shapes of the network that the
   manifest's ``architecture`` builds (a manifest of another architecture is caught here).

Packages are looked up by folder path or by id: the user's model store (fine-tuned
versions, see ``model_store.py``) first, then the bundled ``Resources/Models``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.atomic import atomic_write_json, atomic_write_text
from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "MODEL_CARD.md"
FORMAT_VERSION = 1
METHODS = ("maml", "dtc", "unet")
# methods whose network ends in a softmax over classes including background (MAML, the U-Net
# baselines of its tables); DTC has one sigmoid channel per foreground class instead
SOFTMAX_METHODS = ("maml", "unet")
REQUIRED_FIELDS = ("id", "version", "method", "modalities", "labels", "architecture", "weights", "patch_size")


def bundled_models_dir() -> Path:
    """``Resources/Models`` beside the library (the repository and the Slicer module share it)."""
    override = os.environ.get("MMSEG_BUNDLED_MODELS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "Resources" / "Models"


def sha256_of_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large weights do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelPackage:
    """A model package on disk with its parsed manifest.

    ``read_only`` is true for bundled packages: fine-tuning writes a new version to the
    user's model store and never touches them.
    """

    folder: Path
    manifest: dict[str, Any]
    read_only: bool = False
    _verified: bool = field(default=False, repr=False)

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def method(self) -> str:
        return str(self.manifest["method"])

    @property
    def modalities(self) -> list[str]:
        """Modality names in the order of the network's input channels."""
        return [m["name"] for m in self.manifest["modalities"]]

    @property
    def reference_modality(self) -> str:
        return str(self.manifest.get("reference_modality") or self.modalities[0])

    @property
    def labels(self) -> list[dict[str, Any]]:
        """Foreground labels in class-index order (class 0 is background)."""
        return list(self.manifest["labels"])

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """Sliding-window patch size in array order (z, y, x)."""
        return tuple(int(v) for v in self.manifest["patch_size"])  # type: ignore[return-value]

    @property
    def supports_missing_modalities(self) -> bool:
        return bool(self.manifest.get("supports_missing_modalities", self.method == "maml"))

    @property
    def weights_path(self) -> Path:
        return self.folder / self.manifest["weights"].get("file", WEIGHTS_NAME)

    @property
    def model_card_path(self) -> Path:
        return self.folder / MODEL_CARD_NAME

    def summary(self) -> dict[str, Any]:
        """What a model list or the Slicer panel shows about the package."""
        provenance = self.manifest.get("provenance", {})
        return {
            "id": self.id,
            "version": self.version,
            "method": self.method,
            "title": self.manifest.get("title", self.id),
            "modalities": self.modalities,
            "labels": [label["name"] for label in self.labels],
            "trained_on": provenance.get("data", provenance.get("trained_on", "")),
            "folder": str(self.folder),
            "read_only": self.read_only,
        }

    def verify(self) -> None:
        """Check the weights' sha256 against the manifest (raises MultiModalSegError)."""
        path = self.weights_path
        if not path.is_file():
            raise MultiModalSegError(
                f"Model '{self.id}' has no weights file {path.name} in {self.folder}; "
                "reinstall the model package or pick another model.")
        expected = str(self.manifest["weights"].get("sha256", "")).lower()
        actual = sha256_of_file(path)
        if not expected or actual != expected:
            raise MultiModalSegError(
                f"The weights of model '{self.id}' ({path}) are corrupt or were modified: their sha256 "
                f"is {actual[:12]}... but the manifest expects {expected[:12] or 'none'}...; "
                "reinstall the model package (or roll back to another version).")
        self._verified = True

    def load_state_dict(self) -> dict[str, torch.Tensor]:
        """The verified weights as CPU tensors, read with safetensors (no pickle)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not self._verified:
            self.verify()
        try:
            return load_file(str(self.weights_path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise MultiModalSegError(
                f"The weights file of model '{self.id}' cannot be read as safetensors ({exc}); "
                "reinstall the model package.") from exc

    def build_network(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """Build the manifest's architecture, check the weights fit it exactly, load them.

        Returns the network in eval mode on ``device``.
        """
        from MultiModalSegLib.models import build_model

        state = self.load_state_dict()
        network = build_model(self.manifest["architecture"])
        expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong_shape = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        if missing or unexpected or wrong_shape:
            details = []
            if missing:
                details.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if wrong_shape:
                key = wrong_shape[0]
                details.append(f"{len(wrong_shape)} of another shape (e.g. {key}: file {found[key]}, "
                               f"architecture {expected[key]})")
            raise MultiModalSegError(
                f"The weights of model '{self.id}' do not fit the architecture its manifest describes "
                f"({self.manifest['architecture'].get('name')}): tensors {', '.join(details)}. "
                "The manifest belongs to another model; reinstall the package.")
        network.load_state_dict(state, strict=True)
        network.eval()
        return network.to(device)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise MultiModalSegError(
            f"{folder} is not a model package: it has no {MANIFEST_NAME}. "
            "Give a model id from `mmseg models` or the folder of a model package.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MultiModalSegError(
            f"The manifest {path} is not valid JSON ({exc}); reinstall the model package.") from exc
    if not isinstance(manifest, dict):
        raise MultiModalSegError(f"The manifest {path} must be a JSON object; reinstall the model package.")
    missing = [name for name in REQUIRED_FIELDS if name not in manifest]
    if missing:
        raise MultiModalSegError(
            f"The manifest {path} lacks the field(s) {', '.join(missing)}; reinstall the model package.")
    if manifest["method"] not in METHODS:
        raise MultiModalSegError(
            f"The manifest {path} names the method '{manifest['method']}'; this version of MultiModalSeg "
            f"knows {', '.join(METHODS)}. Update MultiModalSeg or pick another model.")
    if int(manifest.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
        raise MultiModalSegError(
            f"The model package {folder} has format version {manifest['format_version']}, newer than this "
            f"MultiModalSeg understands ({FORMAT_VERSION}); update MultiModalSeg.")
    return manifest


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def open_model_package(folder: str | os.PathLike[str]) -> ModelPackage:
    """Read a package folder's manifest (no weights are read yet)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    return ModelPackage(folder=folder, manifest=manifest,
                        read_only=_is_inside(folder, bundled_models_dir()))


def find_model_packages(search_paths: list[Path] | None = None) -> list[ModelPackage]:
    """Every package the backend can use: current user versions first, then bundled ones.

    A package whose manifest cannot be read is skipped here (``mmseg models`` lists what
    it finds); loading it by path gives the error.
    """
    packages: list[ModelPackage] = []
    seen: set[str] = set()
    if search_paths is None:
        from MultiModalSegLib.model_store import current_packages

        candidates = [p.folder for p in current_packages()]
        bundled = bundled_models_dir()
        if bundled.is_dir():
            candidates += sorted(p for p in bundled.iterdir() if (p / MANIFEST_NAME).is_file())
    else:
        candidates = []
        for root in search_paths:
            root = Path(root)
            if (root / MANIFEST_NAME).is_file():
                candidates.append(root)
            elif root.is_dir():
                candidates += sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file())
    for folder in candidates:
        try:
            package = open_model_package(folder)
        except MultiModalSegError:
            continue
        if package.id in seen:
            continue
        seen.add(package.id)
        packages.append(package)
    return packages


def load_model_package(id_or_path: str | os.PathLike[str], verify: bool = True,
                       search_paths: list[Path] | None = None) -> ModelPackage:
    """Open a package by folder path or by id, verifying its weights' sha256.

    An id resolves to the current version in the user's model store if there is one,
    else to the bundled package of that id.
    """
    candidate = Path(id_or_path)
    if candidate.is_dir():
        package = open_model_package(candidate)
    else:
        packages = {p.id: p for p in find_model_packages(search_paths)}
        if str(id_or_path) not in packages:
            known = ", ".join(sorted(packages)) or "none installed"
            raise MultiModalSegError(
                f"No model package '{id_or_path}' was found (known: {known}). "
                "Give a model id from `mmseg models` or the folder of a model package.")
        package = packages[str(id_or_path)]
    if verify:
        package.verify()
    return package


def save_model_package(network: torch.nn.Module, manifest: dict[str, Any], folder: str | os.PathLike[str],
                       model_card: str | None = None,
                       before_commit: Callable[[], None] | None = None) -> ModelPackage:
    """Write ``network``'s weights, the manifest (with sha256 and architecture) and the card.

    The package is assembled in a temporary sibling folder and renamed into place, so a
    killed process leaves either the complete previous package or the complete new one.
    An existing package at ``folder`` is replaced only after the new one is complete.
    ``before_commit`` runs when the staged package is complete, just before that rename (the
    commit point); if it raises (a cancel), the staging folder goes and ``folder`` is untouched.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and _is_inside(folder, bundled_models_dir()) and os.environ.get("MMSEG_ALLOW_BUNDLED_WRITE") != "1":
        raise MultiModalSegError(
            f"{folder} is a bundled model package and is read-only; write the new version to the user "
            "model store or another folder.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
        weights = staging / WEIGHTS_NAME
        save_file(state, str(weights))
        with open(weights, "rb+") as handle:
            os.fsync(handle.fileno())
        manifest = dict(manifest)
        manifest.setdefault("format_version", FORMAT_VERSION)
        architecture = getattr(network, "architecture", None)
        if architecture is not None:
            manifest["architecture"] = architecture
        manifest["weights"] = {"file": WEIGHTS_NAME, "sha256": sha256_of_file(weights), "format": "safetensors"}
        atomic_write_json(staging / MANIFEST_NAME, manifest)
        atomic_write_text(staging / MODEL_CARD_NAME, model_card or f"# {manifest.get('id', folder.name)}\n")
        _read_manifest(staging)
        if before_commit is not None:
            before_commit()
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            retired.rmdir()
            os.replace(folder, retired)
            os.replace(staging, folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return open_model_package(folder)


def update_manifest(folder: str | os.PathLike[str], change: Any) -> dict[str, Any]:
    """Rewrite a package's manifest with ``change(manifest)`` applied in place; the weights stay as they are.

    For facts decided after the weights were saved (the post-processing chosen on validation).
    The new manifest is checked and replaces the old one atomically. Bundled packages are refused
    like in :func:`save_model_package`.
    """
    folder = Path(folder)
    if _is_inside(folder, bundled_models_dir()) and os.environ.get("MMSEG_ALLOW_BUNDLED_WRITE") != "1":
        raise MultiModalSegError(
            f"{folder} is a bundled model package and is read-only; change a copy in the user model store.")
    manifest = _read_manifest(folder)
    change(manifest)
    atomic_write_json(folder / MANIFEST_NAME, manifest)
    return _read_manifest(folder)
