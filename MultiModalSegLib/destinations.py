"""Where results go: every destination checked before any work starts, and trained weights kept when a save fails.

A user who points ``--output`` at a read-only share, a folder below a file, or a model store they
cannot write must hear so in one sentence before an hour of training, not in a traceback after
it. Every verb that writes calls :func:`check_writable_folder` for each of its destinations
first: ``predict``, ``demo``, ``evaluate`` and ``train`` their ``--output``; ``finetune`` its
``--output`` and the user model store (or ``OUTPUT/model`` with ``--no-store``). The library's
``train()`` and ``finetune()`` check their destinations too, before loading any data, so a
script that calls them directly is told as early as the command line.

The check *writes*: it creates and removes a hidden file in the destination (or, when the
destination does not exist yet, in its nearest existing parent, where it will be created).
Permission bits are no answer: root passes every ``access()`` test, and a read-only mount
or a full quota only shows when something is written.

A destination can still fail later (the disk fills, a share drops). A training run then must
not lose its weights: :func:`weights_kept_if_save_fails` wraps each save, and when the save
raises ``OSError`` it writes the network as a complete model package to the first folder of
:func:`rescue_folders` that takes it, and raises a :class:`MultiModalSegError` whose sentence
(and ``kept_weights`` detail, in the CLI's ``error`` event) says where the weights are.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch

RESCUE_ENVIRONMENT = "MMSEG_RESCUE_DIR"
"""Environment variable naming the first folder to keep weights in when a save fails."""
_PROBE_PREFIX = ".mmseg-write-check-"
OUTPUT_REMEDY = "choose a folder you can write to with --output"
"""What every verb's ``--output`` check tells the user to do."""
STORE_REMEDY = ("set MMSEG_MODEL_STORE to a folder you can write to, or pass --no-store to write the new version "
                "to OUTPUT/model")
"""What ``finetune`` tells the user when the user model store cannot be written."""


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest existing ancestor."""
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def check_writable_folder(folder: str | os.PathLike[str], what: str, remedy: str) -> None:
    """Refuse a destination folder that cannot be created or written, with one sentence.

    Args:
        folder: the folder the run will write into (created later if it does not exist).
        what: how the sentence names it, e.g. ``"output folder"`` or ``"model store"``.
        remedy: what to do, e.g. ``"choose a folder you can write to with --output"``.

    Raises:
        MultiModalSegError: ``folder`` is a file; a parent of it is a file; or a file cannot be
            created in it (or in the parent it will be created in): read-only file system,
            no permission, no space.
    """
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise MultiModalSegError(f"The {what} {folder} is a file, not a folder; {remedy}.")
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise MultiModalSegError(
            f"The {what} {folder} cannot be created because {existing} is a file, not a folder; {remedy}.")
    try:
        handle, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        where = "" if existing == folder else f" (it would be created in {existing})"
        raise MultiModalSegError(
            f"The {what} {folder} cannot be written{where}: {error.strerror or error}; {remedy}.") from error


def rescue_folders() -> list[Path]:
    """Where trained weights go when their destination fails, in order of preference.

    ``$MMSEG_RESCUE_DIR``; ``rescued/`` beside the user model store (kept across reboots);
    ``MultiModalSeg-rescued`` in the system temporary folder; the same in the home folder.
    """
    from MultiModalSegLib.model_store import user_model_store_dir

    folders = []
    if os.environ.get(RESCUE_ENVIRONMENT):
        folders.append(Path(os.environ[RESCUE_ENVIRONMENT]))
    folders += [user_model_store_dir().parent / "rescued", Path(tempfile.gettempdir()) / "MultiModalSeg-rescued",
                Path.home() / "MultiModalSeg-rescued"]
    return folders


def keep_weights_elsewhere(network: torch.nn.Module, manifest: dict[str, Any],
                           model_card: str | None = None) -> Path | None:
    """Save ``network`` as a complete model package in the first rescue folder that takes it; None if none does."""
    from MultiModalSegLib.weights import save_model_package

    manifest = {**manifest}
    manifest.setdefault("version", 1)
    name = f"{manifest.get('id', 'model')}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for root in rescue_folders():
        try:
            return save_model_package(network, manifest, root / name, model_card).folder
        except (OSError, MultiModalSegError):
            continue
    return None


@contextlib.contextmanager
def weights_kept_if_save_fails(network: torch.nn.Module, manifest: Callable[[], dict[str, Any]],
                               destination: str | os.PathLike[str],
                               model_card: Callable[[dict[str, Any]], str] | None = None) -> Iterator[None]:
    """Run a save; if it raises ``OSError``, keep ``network`` elsewhere and raise a sentence saying where.

    ``manifest`` (and ``model_card`` of it) are only called when the save failed, so the wrapped
    save costs nothing extra. The raised :class:`MultiModalSegError` carries ``kept_weights``.
    """
    try:
        yield
    except OSError as error:
        package_manifest = manifest()
        kept = keep_weights_elsewhere(network, package_manifest,
                                      model_card(package_manifest) if model_card is not None else None)
        reason = error.strerror or str(error)
        if kept is None:
            tried = ", ".join(str(p) for p in rescue_folders())
            raise MultiModalSegError(
                f"Could not write {destination} ({reason}), and the trained weights could not be kept anywhere "
                f"else either (tried {tried}); free disk space and run again.") from error
        raise MultiModalSegError(
            f"Could not write {destination} ({reason}); the trained weights were kept as a complete model package "
            f"in {kept}: use it with --model {kept}, or copy it where it belongs once the destination can be "
            "written.", kept_weights=str(kept)) from error


def check_finetune_destinations(output: str | os.PathLike[str], store: bool,
                                store_folder: str | os.PathLike[str] | None = None) -> None:
    """``finetune`` writes ``OUTPUT/result.json`` and the new version: the model store, or ``OUTPUT/model``.

    ``store_folder`` is the store it writes to (default: the user model store).
    """
    check_writable_folder(output, "output folder", OUTPUT_REMEDY)
    if store:
        from MultiModalSegLib.model_store import user_model_store_dir

        check_writable_folder(store_folder or user_model_store_dir(), "model store", STORE_REMEDY)
