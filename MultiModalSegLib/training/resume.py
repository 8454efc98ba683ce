"""``train --resume`` continues the checkpoint's run; an option that would make it another run is refused.

A resumed run takes every setting from the checkpoint (``train.py``), so an option given with
``--resume`` that differs from the checkpoint's value was once dropped without a word: resuming a
DTC run with ``--method maml``, or with another ``--base-filters`` or ``--architecture``, trained
on as the checkpoint's run. :func:`check_resume_settings` compares what the command line asks for
with the checkpoint's settings and refuses any difference in one sentence that names the options.
The same command with ``--resume`` added always passes.

What may change on resume: ``--device``, ``--workers`` (where it runs), ``--iterations`` (to
train longer), ``--validate-every`` and ``--checkpoint-every`` (when it reports and saves; they
change no weight). Everything else (method, network, patch, batch, seed, learning rate, the
method's settings, ``--modalities``) is the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    from MultiModalSegLib.training.config import TrainingConfig

MAY_CHANGE = frozenset({"device", "num_workers", "iterations", "validate_every", "checkpoint_every",
                        "progress_every"})
"""Config fields a resumed run may change (where it runs, how long, how often it reports and saves)."""

OPTION_FIELDS: Mapping[str, tuple[str, ...]] = {
    "patch": ("patch_size",), "batch": ("batch_size",), "labeled_batch": ("labeled_batch_size",),
    "seed": ("seed",), "amp": ("amp",), "labeled": ("labeled_cases",), "validation_cases": ("validation_cases",),
    "learning_rate": ("optimizer.learning_rate",), "base_filters": ("maml.base_filters", "dtc.base_filters"),
    "depth": ("maml.depth",), "lambda_intra": ("maml.lambda_intra",), "dtc_variant": ("dtc.variant",),
    "architecture": ("architecture_overrides",),
}
"""``train`` options (argparse dest) and the config fields each sets: given explicitly, they are compared
even when they equal the default (``--base-filters 16`` against a checkpoint trained with 2)."""

ALLOWED_TEXT = "--device, --workers, --iterations, --validate-every and --checkpoint-every"


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping) and key != "architecture_overrides" and key != "augmentation":
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def _option_name(field: str) -> str:
    for option, fields in OPTION_FIELDS.items():
        if field in fields:
            return "--" + option.replace("_", "-")
    return f"--set {field}"


def _checkpoint_record(output: Path) -> dict[str, Any] | None:
    """The checkpoint's ``state.json`` (after undoing a half-done swap), or None without a checkpoint."""
    from MultiModalSegLib.training.checkpoint import STATE_FILE, recover_folder

    folder = output / "checkpoint"
    recover_folder(folder)
    try:
        return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # train() says what is missing or broken


def refuse_other_method(saved_method: str, method: str, output: Path) -> None:
    """A checkpoint of one method cannot continue as another."""
    if saved_method != method:
        raise MultiModalSegError(
            f"The checkpoint in {output} was trained with --method {saved_method}, not {method}; resume with "
            f"--method {saved_method}, or start a new output folder to train {method}.")


def check_resume_settings(output: str | Path, requested: TrainingConfig, explicit_options: Iterable[str],
                          modalities: list[str] | None = None, explicit_settings: Iterable[str] = ()) -> None:
    """Refuse ``--resume`` with settings other than the checkpoint's (see the module docstring).

    Args:
        output: the training output folder holding ``checkpoint/``.
        requested: the config the command line builds (method defaults plus the options given).
        explicit_options: the ``train`` options given on the command line (argparse dests).
        modalities: ``--modalities`` as given, or None.
        explicit_settings: the ``--set KEY=VALUE`` assignments given: their keys are compared even
            when the value is the default (``--set dtc.beta=0.3`` against a checkpoint trained with 0.5).
    """
    from MultiModalSegLib.training.config import TrainingConfig, split_setting

    output = Path(output)
    record = _checkpoint_record(output)
    if record is None or not isinstance(record.get("config"), dict):
        return
    saved = TrainingConfig.from_dict(record["config"])
    refuse_other_method(saved.method, requested.method, output)
    new = _flatten(requested.to_dict())
    old = _flatten(saved.to_dict())
    defaults = _flatten(TrainingConfig.for_method(requested.method).to_dict())
    touched = {key for key, value in new.items() if value != defaults.get(key)}
    touched |= {field for option in explicit_options for field in OPTION_FIELDS.get(option, ())}
    touched |= {split_setting(assignment)[0] for assignment in explicit_settings}
    other_method = "maml." if requested.method == "dtc" else "dtc."  # settings this method never reads
    differing = sorted(key for key in touched - MAY_CHANGE
                       if new.get(key) != old.get(key) and not key.startswith(other_method))
    changes = [f"{_option_name(key)} {json.dumps(old.get(key))} (asked: {json.dumps(new.get(key))})"
               for key in differing]
    saved_modalities = (record.get("extra") or {}).get("modalities")
    if modalities and saved_modalities and list(modalities) != list(saved_modalities):
        changes.append(f"--modalities {','.join(saved_modalities)} (asked: {','.join(modalities)})")
    if changes:
        raise MultiModalSegError(
            f"The checkpoint in {output} was trained with {'; '.join(changes)}; --resume continues that run, so only "
            f"{ALLOWED_TEXT} may change: give the checkpoint's values or drop those options, or start a new output "
            "folder.")
