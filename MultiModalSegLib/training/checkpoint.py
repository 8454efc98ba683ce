"""Resumable training checkpoints that never need unpickling.

A checkpoint is a folder::

    checkpoint/
        model.safetensors       the network's weights (the plain module, not the DDP wrapper)
        optimizer.safetensors   every tensor of the optimizer state and the RNG states
        state.json              everything else: iteration, config, scalars, lr, history, sha256s

``torch.save`` is never used: the optimizer's per-parameter tensors (SGD momentum buffers) go to
safetensors under ``state.<param index>.<name>``, its scalars and ``param_groups`` go to JSON.
The folder is assembled in a hidden staging sibling and swapped into place (see
:func:`replace_folder_atomically`), so a process killed at any moment leaves the previous complete
checkpoint, or the new complete one, never a mixture.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.atomic import atomic_write_json, fsync_directory
from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch

CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
STAGING_MARKER = ".tmp-"
RETIRED_MARKER = ".old-"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())




@contextmanager
def replace_folder_atomically(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``final`` as a whole.

    The staging folder is a hidden sibling (``.name.tmp-XXXX``). On success an existing
    ``final`` is first renamed to ``.name.old-XXXX``, the staging folder is renamed onto
    ``final`` and the old one is deleted. A process killed between the two renames leaves the
    complete old folder as ``.name.old-XXXX``; :func:`recover_folder` puts it back. On an
    exception the staging folder is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}{STAGING_MARKER}", dir=final.parent))
    try:
        yield staging
        for path in staging.rglob("*"):
            if path.is_file():
                _fsync_file(path)
        fsync_directory(staging)
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{final.name}{RETIRED_MARKER}", dir=final.parent))
            retired.rmdir()
            os.replace(final, retired)
            os.replace(staging, final)
            fsync_directory(final.parent)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
            fsync_directory(final.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def recover_folder(final: str | os.PathLike[str]) -> None:
    """Undo a swap that a killed process left half done, and remove stale staging folders.

    Only meant for folders this module writes (checkpoints); it is safe to call at any time
    when no other process writes the same folder.
    """
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return
    retired = sorted(parent.glob(f".{final.name}{RETIRED_MARKER}*"))
    if not final.exists() and retired:
        os.replace(retired[-1], final)
        retired = retired[:-1]
    for stale in retired + sorted(parent.glob(f".{final.name}{STAGING_MARKER}*")):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@dataclass
class TrainingState:
    """What a resumed run needs besides tensors (all JSON)."""

    iteration: int
    total_iterations: int
    config: dict[str, Any]
    method: str
    best_metric: float | None = None
    best_iteration: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of ``optimizer.state_dict()`` for safetensors, the rest as JSON-ready values."""
    import torch

    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            key = f"state.{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_snapshot() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import numpy as np
    import torch

    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    python_state = random.getstate()
    meta = {
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    import numpy as np
    import torch

    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    if torch.cuda.is_available():
        cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    if "numpy" in meta:
        kind, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))


def save_checkpoint(folder: str | os.PathLike[str], network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainingState, grad_scaler: Any = None) -> Path:
    """Write a complete checkpoint folder atomically and return its path."""
    from safetensors.torch import save_file

    from MultiModalSegLib.weights import sha256_of_file

    folder = Path(folder)
    network = getattr(network, "module", network)
    with replace_folder_atomically(folder) as staging:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
        save_file(weights, str(staging / MODEL_FILE))
        optimizer_tensors, optimizer_meta = _split_optimizer_state(optimizer)
        rng_tensors, rng_meta = _rng_snapshot()
        save_file({**optimizer_tensors, **rng_tensors}, str(staging / OPTIMIZER_FILE))
        scaler_state = None
        if grad_scaler is not None and getattr(grad_scaler, "is_enabled", lambda: False)():
            scaler_state = {k: (v.item() if hasattr(v, "item") else v) for k, v in grad_scaler.state_dict().items()}
        record = {
            "format": CHECKPOINT_FORMAT,
            "iteration": state.iteration,
            "total_iterations": state.total_iterations,
            "method": state.method,
            "config": state.config,
            "best_metric": state.best_metric,
            "best_iteration": state.best_iteration,
            "history": state.history,
            "last_losses": state.last_losses,
            "extra": state.extra,
            "optimizer": optimizer_meta,
            "rng": rng_meta,
            "grad_scaler": scaler_state,
            "architecture": getattr(network, "architecture", None),
            "files": {name: sha256_of_file(staging / name) for name in (MODEL_FILE, OPTIMIZER_FILE)},
        }
        atomic_write_json(staging / STATE_FILE, record)
    return folder


@dataclass
class LoadedCheckpoint:
    """A checkpoint read back: tensors on CPU plus the JSON record."""

    folder: Path
    record: dict[str, Any]
    weights: dict[str, Any]
    optimizer_tensors: dict[str, Any]

    @property
    def state(self) -> TrainingState:
        r = self.record
        return TrainingState(iteration=int(r["iteration"]), total_iterations=int(r["total_iterations"]),
                             config=r["config"], method=r["method"], best_metric=r.get("best_metric"),
                             best_iteration=r.get("best_iteration"), history=list(r.get("history", [])),
                             last_losses=dict(r.get("last_losses", {})), extra=dict(r.get("extra", {})))

    def restore(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                grad_scaler: Any = None, restore_rng: bool = True) -> None:
        """Load weights (strict), optimizer state, grad-scaler state and RNG states."""
        network = getattr(network, "module", network)
        try:
            network.load_state_dict(self.weights, strict=True)
        except RuntimeError as exc:
            raise MultiModalSegError(
                f"The checkpoint in {self.folder} was written for another network ({str(exc).splitlines()[0]}); "
                "resume with the same method and settings, or start a new output folder.") from exc
        if optimizer is not None:
            optimizer.load_state_dict(_join_optimizer_state(self.optimizer_tensors, self.record["optimizer"]))
        if grad_scaler is not None and self.record.get("grad_scaler") and grad_scaler.is_enabled():
            grad_scaler.load_state_dict(self.record["grad_scaler"])
        if restore_rng:
            _restore_rng(self.optimizer_tensors, self.record.get("rng", {}))


def load_checkpoint(folder: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Read and verify a checkpoint folder (sha256 of both tensor files; no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from MultiModalSegLib.weights import sha256_of_file

    folder = Path(folder)
    recover_folder(folder)
    state_path = folder / STATE_FILE
    if not state_path.is_file():
        raise MultiModalSegError(
            f"There is no checkpoint to resume in {folder} (no {STATE_FILE}); run without --resume to start "
            "training from the beginning.")
    try:
        record = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MultiModalSegError(f"The checkpoint record {state_path} is not valid JSON ({exc}); "
                                 "delete the checkpoint folder and train again.") from exc
    if int(record.get("format", 0)) > CHECKPOINT_FORMAT:
        raise MultiModalSegError(f"The checkpoint in {folder} was written by a newer MultiModalSeg; update it.")
    for name, expected in record.get("files", {}).items():
        path = folder / name
        if not path.is_file() or sha256_of_file(path) != expected:
            raise MultiModalSegError(
                f"The checkpoint file {path} is missing or corrupt; delete {folder} and train again "
                "(or resume from a copy).")
    try:
        weights = load_file(str(folder / MODEL_FILE), device="cpu")
        optimizer_tensors = load_file(str(folder / OPTIMIZER_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise MultiModalSegError(f"The checkpoint in {folder} cannot be read ({exc}); delete it and train again.") from exc
    return LoadedCheckpoint(folder=folder, record=record, weights=weights, optimizer_tensors=optimizer_tensors)
