"""Training, semi-supervised fine-tuning and multi-GPU training of MAML and DTC.

Importing this package is cheap (no torch): the CLI registers ``train`` and ``finetune``
from :mod:`.cli_verbs` at parse time. One idea per module:

* :mod:`.config` - ``TrainingConfig``, ``FinetuneConfig``, ``OptimizerConfig`` with the references' defaults
* :mod:`.loop` - ``TrainingLoop``: iterations, schedule, AMP, clipping, progress, validation, checkpoints
* :mod:`.maml_step` / :mod:`.dtc_step` - one iteration's loss for each method
* :mod:`.train` - ``train(...)``: data spec -> model package (best and last) + checkpoint, ``--resume``
* :mod:`.finetune` - ``finetune(...)``: model package + corrected cases -> a new version in the model store
* :mod:`.checkpoint` - resumable checkpoints in safetensors + JSON (no pickle), written atomically
* :mod:`.cancellation` - SIGTERM/SIGINT stop at the next iteration (exit codes 143/130)
* :mod:`.distributed` - torchrun / DDP (NCCL on GPU, gloo on CPU), rank 0 writes
* :mod:`.validation` - sliding-window validation on held-out volumes, Dice
* :mod:`.cli_verbs` - the ``train`` and ``finetune`` verbs and ``models --versions / --rollback``
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "TrainingConfig": "config",
    "FinetuneConfig": "config",
    "OptimizerConfig": "config",
    "train": "train",
    "TrainingOutcome": "train",
    "finetune": "finetune",
    "FinetuneOutcome": "finetune",
    "CancellationToken": "cancellation",
    "TrainingCancelled": "cancellation",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
}

__all__ = [
    "CancellationToken",
    "FinetuneConfig",
    "FinetuneOutcome",
    "OptimizerConfig",
    "TrainingCancelled",
    "TrainingConfig",
    "TrainingOutcome",
    "finetune",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
