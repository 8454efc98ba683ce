"""The user's model store: versions 1, 2, 3 ... of each model id, with rollback.

Layout (under ``user_model_store_dir()``; ``$MMSEG_MODEL_STORE`` overrides it)::

    <id>/v2/            a complete model package (manifest.json, model.safetensors, card)
    <id>/v3/
    <id>/current        text file with the current version number

Bundled packages (``Resources/Models``) are read-only and never copied here; the first
fine-tuning of bundled ``<id>`` version 1 writes ``<id>/v2``. A version folder, once written, is
never changed: fine-tuning always adds a new one, and rollback only moves the ``current``
pointer, which may also point back at the bundled version.

Writes are atomic: a new version is assembled in a hidden staging folder
(``<id>/.incoming.tmp-<pid>-XXXX``) and renamed onto ``v<N>`` (a rename onto an existing
non-empty folder fails, so two concurrent fine-tunings get different numbers); ``current`` is
replaced with an atomic file write. A process killed at any moment leaves every complete
version and a valid ``current``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from MultiModalSegLib.weights import ModelPackage

CURRENT_FILE = "current"
VERSION_PATTERN = re.compile(r"^v(\d+)$")
INCOMING_PREFIX = ".incoming.tmp-"
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def user_model_store_dir() -> Path:
    """``$MMSEG_MODEL_STORE`` if set, else ``$XDG_DATA_HOME/MultiModalSeg/models``
    (``~/.local/share``), or ``%LOCALAPPDATA%`` on Windows."""
    override = os.environ.get("MMSEG_MODEL_STORE")
    if override:
        return Path(override)
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "MultiModalSeg" / "models"


def _root(store: Path | None) -> Path:
    return Path(store) if store is not None else user_model_store_dir()


def _check_model_id(model_id: str) -> str:
    if not MODEL_ID_PATTERN.match(str(model_id)):
        raise MultiModalSegError(
            f"'{model_id}' is not a valid model id: use letters, digits, '.', '_' and '-' only.")
    return str(model_id)


def current_version(model_id: str, store: Path | None = None) -> int | None:
    """The current version number of ``model_id`` in the store, or None."""
    pointer = _root(store) / model_id / CURRENT_FILE
    try:
        return int(pointer.read_text().strip())
    except (OSError, ValueError):
        return None


def store_versions(model_id: str, store: Path | None = None) -> list[int]:
    """Version numbers of ``model_id`` whose package folder exists in the store, ascending."""
    folder = _root(store) / model_id
    if not folder.is_dir():
        return []
    versions = []
    for child in folder.iterdir():
        match = VERSION_PATTERN.match(child.name)
        if match and (child / "manifest.json").is_file():
            versions.append(int(match.group(1)))
    return sorted(versions)


def _bundled_package(model_id: str) -> ModelPackage | None:
    from MultiModalSegLib.weights import MANIFEST_NAME, bundled_models_dir, open_model_package

    root = bundled_models_dir()
    if not root.is_dir():
        return None
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file()):
        try:
            package = open_model_package(folder)
        except MultiModalSegError:
            continue
        if package.id == model_id:
            return package
    return None


def version_package(model_id: str, version: int, store: Path | None = None) -> ModelPackage:
    """The package of ``model_id`` version ``version``: from the store, else the bundled one."""
    from MultiModalSegLib.weights import open_model_package

    folder = _root(store) / model_id / f"v{int(version)}"
    if (folder / "manifest.json").is_file():
        return open_model_package(folder)
    bundled = _bundled_package(model_id)
    if bundled is not None and bundled.version == int(version):
        return bundled
    known = sorted(set(store_versions(model_id, store)) | ({bundled.version} if bundled else set()))
    raise MultiModalSegError(
        f"Model '{model_id}' has no version {version} (known versions: "
        f"{', '.join(map(str, known)) or 'none'}); see `mmseg models --versions`.")


def current_packages(store: Path | None = None) -> list[ModelPackage]:
    """The current version of every model id in the store.

    A ``current`` pointer that names the bundled version (after a rollback) yields the bundled
    package; a pointer to a missing version falls back to the newest version in the store.
    """
    root = _root(store)
    packages: list[ModelPackage] = []
    if not root.is_dir():
        return packages
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        version = current_version(model_dir.name, root)
        candidates = ([version] if version is not None else []) + list(reversed(store_versions(model_dir.name, root)))
        for candidate in candidates:
            try:
                packages.append(version_package(model_dir.name, candidate, root))
                break
            except MultiModalSegError:
                continue
    return packages


def _write_current(model_id: str, version: int, root: Path) -> None:
    from MultiModalSegLib.atomic import atomic_write_text

    atomic_write_text(root / model_id / CURRENT_FILE, f"{int(version)}\n")


def _remove_stale_incoming(model_dir: Path) -> None:
    """Remove staging folders of writers that no longer run (their pid is in the name)."""
    from MultiModalSegLib.atomic import process_is_running

    for stale in model_dir.glob(f"{INCOMING_PREFIX}*"):
        match = re.match(rf"^{re.escape(INCOMING_PREFIX)}(\d+)-", stale.name)
        pid = int(match.group(1)) if match else None
        if pid is None or pid == os.getpid() or not process_is_running(pid):
            shutil.rmtree(stale, ignore_errors=True)


def add_version(network: torch.nn.Module, manifest: dict[str, Any],
                model_card: str | Callable[[dict[str, Any]], str] | None = None,
                minimum_version: int = 1, make_current: bool = True, store: Path | None = None,
                before_commit: Callable[[], None] | None = None) -> ModelPackage:
    """Write ``network`` as the next version of ``manifest['id']`` and (by default) make it current.

    The version number is one more than the largest of: the store's versions and
    ``minimum_version - 1`` (pass the starting package's version + 1, so a fine-tuned bundled v1
    becomes v2). ``manifest['version']`` is set to that number. ``model_card`` may be a function
    of the final manifest (so the card can name the version).

    The commit point is the rename of the complete staged package onto ``v<N>``;
    ``before_commit`` runs just before it, and if it raises (a cancel), nothing was added.
    """
    from MultiModalSegLib.weights import save_model_package

    root = _root(store)
    model_id = _check_model_id(manifest["id"])
    model_dir = root / model_id
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_incoming(model_dir)
    incoming = Path(tempfile.mkdtemp(prefix=f"{INCOMING_PREFIX}{os.getpid()}-", dir=model_dir))
    try:
        for _ in range(100):
            existing = store_versions(model_id, root)
            version = max([minimum_version - 1, *existing]) + 1
            staged = incoming / "package"
            if staged.exists():
                shutil.rmtree(staged)
            final_manifest = {**manifest, "version": version}
            card = model_card(final_manifest) if callable(model_card) else model_card
            save_model_package(network, final_manifest, staged, card)
            target = model_dir / f"v{version}"
            if before_commit is not None:
                before_commit()
            try:
                if target.exists() and any(target.iterdir()):
                    continue
                os.rename(staged, target)
            except OSError:
                continue  # another writer took this number; try the next one
            break
        else:  # pragma: no cover - 100 concurrent writers
            raise MultiModalSegError(f"Could not find a free version number for '{model_id}' in {model_dir}.")
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    if make_current:
        _write_current(model_id, version, root)
    return version_package(model_id, version, root)


def rollback(model_id: str, version: int, store: Path | None = None) -> ModelPackage:
    """Make ``version`` of ``model_id`` current again (a store version or the bundled one).

    Nothing is deleted: newer versions stay in the store and can be made current again.
    The package's weights are verified first, so a corrupt version is never made current.
    """
    root = _root(store)
    _check_model_id(model_id)
    package = version_package(model_id, int(version), root)
    package.verify()
    (root / model_id).mkdir(parents=True, exist_ok=True)
    _write_current(model_id, int(version), root)
    return package


def _created(package: ModelPackage) -> str | None:
    provenance = package.manifest.get("provenance") or {}
    return provenance.get("created") or provenance.get("finished")


def list_model_versions(model_id: str | None = None, store: Path | None = None) -> list[dict[str, Any]]:
    """Every version the user can roll back to, grouped by id: store versions and bundled ones.

    Each entry: ``id``, ``version``, ``current`` (bool), ``source`` (``user`` or ``bundled``),
    ``folder``, ``title``, ``created`` and ``fine_tuned_from`` (``{"id", "version"}`` or None).
    """
    from MultiModalSegLib.weights import open_model_package

    root = _root(store)
    ids: set[str] = set()
    if root.is_dir():
        ids |= {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    from MultiModalSegLib.weights import MANIFEST_NAME, bundled_models_dir

    bundled_root = bundled_models_dir()
    bundled: dict[str, ModelPackage] = {}
    if bundled_root.is_dir():
        for folder in sorted(p for p in bundled_root.iterdir() if (p / MANIFEST_NAME).is_file()):
            try:
                package = open_model_package(folder)
            except MultiModalSegError:
                continue
            bundled.setdefault(package.id, package)
    ids |= set(bundled)
    if model_id is not None:
        ids &= {model_id}
    entries: list[dict[str, Any]] = []
    for name in sorted(ids):
        pointer = current_version(name, root)
        versions: dict[int, tuple[str, ModelPackage]] = {}
        if name in bundled:
            versions[bundled[name].version] = ("bundled", bundled[name])
        for version in store_versions(name, root):
            try:
                versions[version] = ("user", open_model_package(root / name / f"v{version}"))
            except MultiModalSegError:
                continue
        current = pointer if pointer in versions else (max(versions) if versions else None)
        for version in sorted(versions):
            source, package = versions[version]
            provenance = package.manifest.get("provenance") or {}
            parent = provenance.get("fine_tuned_from")
            entries.append({
                "id": name,
                "version": version,
                "current": version == current,
                "source": source,
                "folder": str(package.folder),
                "title": package.manifest.get("title", name),
                "method": package.method,
                "created": _created(package),
                "fine_tuned_from": ({"id": parent.get("id"), "version": parent.get("version")}
                                    if isinstance(parent, dict) else None),
            })
    return entries


def format_versions_table(entries: list[dict[str, Any]]) -> str:
    """A human-readable table of :func:`list_model_versions` (for stderr or a terminal)."""
    if not entries:
        return "No models found."
    lines = [f"{'id':<28} {'ver':>4}  {'':1} {'source':<8} {'created':<20} from"]
    for e in entries:
        parent = e["fine_tuned_from"]
        origin = f"{parent['id']} v{parent['version']}" if parent else ""
        lines.append(f"{e['id']:<28} {e['version']:>4}  {'*' if e['current'] else ' '} {e['source']:<8} "
                     f"{(e['created'] or '')[:19]:<20} {origin}")
    return "\n".join(lines)


def store_manifest_summary(package: ModelPackage) -> dict[str, Any]:
    """A short JSON description of a stored version (for ``result`` events)."""
    return {"id": package.id, "version": package.version, "folder": str(package.folder),
            "sha256": package.manifest.get("weights", {}).get("sha256")}



def leftover_staging(store: Path | None = None) -> list[Path]:
    """Staging folders and temporary files that an interrupted writer left in the store."""
    root = _root(store)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)
