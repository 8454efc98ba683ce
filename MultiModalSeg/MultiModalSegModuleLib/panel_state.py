"""What the panel shows, as plain data: the controller computes it, the Qt widget only copies it.

:class:`PanelState` holds every text, list, selection and enabled flag of the panel
(``Resources/UI/MultiModalSeg.ui``). The widget sets each widget from it with its signals
blocked, so showing a state never looks like a user's action. The rules that decide the
buttons live here as small functions of the model, the inputs and the running job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .model_catalog import ModelChoice
from .panel_parameters import MAX_INPUTS

__all__ = [
    "JOB_PREDICT",
    "JOB_FINETUNE",
    "JOB_VERSIONS",
    "JOB_ROLLBACK",
    "InputRow",
    "Choice",
    "Progress",
    "PanelState",
    "input_rows",
    "inputs_note",
    "inputs_problem",
]

JOB_PREDICT = "predict"
JOB_FINETUNE = "finetune"
JOB_VERSIONS = "versions"
JOB_ROLLBACK = "rollback"

NO_MODEL_TEXT = "No model package found: reinstall the extension or fine-tune a model."


@dataclass(frozen=True)
class InputRow:
    """One input row: label, selector tooltip, whether it is shown, and the selected volume's node id."""

    label: str
    tooltip: str
    visible: bool
    node_id: str = ""


@dataclass(frozen=True)
class Choice:
    """One entry of a combo box or list: its text and the value it stands for."""

    text: str
    value: str = ""
    checked: bool = False


@dataclass(frozen=True)
class Progress:
    """A progress bar: shown or not, value 0-100 and its text (``inference %p%``)."""

    visible: bool = False
    value: int = 0
    text: str = ""


@dataclass(frozen=True)
class PanelState:
    """Everything the panel shows."""

    models: tuple[Choice, ...] = ()
    model_id: str = ""
    model_summary: str = NO_MODEL_TEXT
    model_enabled: bool = True
    input_rows: tuple[InputRow, ...] = ()
    inputs_enabled: bool = True
    inputs_note: str = ""
    match_enabled: bool = False
    device: str = "auto"
    overlap: float = 0.5
    output_segmentation_id: str = ""
    apply_text: str = "Apply"
    apply_enabled: bool = False
    apply_tooltip: str = ""
    progress: Progress = field(default_factory=Progress)
    overlays: tuple[Choice, ...] = ()
    overlay_id: str = ""
    overlay_enabled: bool = False
    overlay_opacity: float = 0.5
    labeled_cases: tuple[Choice, ...] = ()
    unlabeled_cases: tuple[Choice, ...] = ()
    finetune_iterations: int = 200
    finetune_text: str = "Fine-tune"
    finetune_enabled: bool = False
    finetune_progress: Progress = field(default_factory=Progress)
    versions: tuple[Choice, ...] = ()
    version_row: int = -1
    refresh_versions_enabled: bool = False
    rollback_enabled: bool = False
    status: str = ""
    polling: bool = False
    """True while a backend job runs: the widget's timer calls ``poll`` then."""


def input_rows(model: ModelChoice | None, volumes: Sequence[Any]) -> tuple[InputRow, ...]:
    """The four input rows for ``model``: one per modality, the rest hidden."""
    names = model.modality_names if model is not None else []
    rows = []
    for index in range(MAX_INPUTS):
        if index < len(names):
            patterns = ", ".join(model.modalities[index].all_patterns())
            volume = volumes[index] if index < len(volumes) else None
            rows.append(InputRow(f"{names[index]}:", f"The {names[index]} volume (names matching {patterns} are picked "
                                 "by themselves; choose (missing) to leave it out).", True,
                                 volume.GetID() if volume is not None else ""))
        else:
            rows.append(InputRow(f"Modality {index + 1}:", "", False))
    return tuple(rows)


def inputs_note(model: ModelChoice | None) -> str:
    """The sentence under the input rows."""
    if model is None:
        return ""
    if len(model.modalities) > MAX_INPUTS:
        return (f"This model needs {len(model.modalities)} modalities; the panel takes at most {MAX_INPUTS}. "
                "Use the command line (python -m MultiModalSegLib predict).")
    if model.supports_missing_modalities and len(model.modalities) > 1:
        return "A missing modality may be left empty: the others still segment."
    return "Every modality is needed."


def inputs_problem(model: ModelChoice | None, volumes: Sequence[Any], unusable: dict[int, str]) -> str:
    """Why Apply cannot start with these inputs (a sentence), or empty when it can.

    ``unusable`` maps a row to what its volume is when the selectors cannot take it (a volume from
    a loaded scene that is, say, a vector volume).
    """
    if model is None:
        return NO_MODEL_TEXT
    if len(model.modalities) > MAX_INPUTS:
        return inputs_note(model)
    for index, what in sorted(unusable.items()):
        return (f"The {model.modality_names[index]} input is {what}; choose a single-component scalar volume "
                "or (missing).")
    chosen = [index for index, volume in enumerate(volumes[:len(model.modalities)]) if volume is not None]
    if not chosen:
        return "Select at least one input volume (or load one whose name matches a modality)."
    missing = [model.modality_names[index] for index in range(len(model.modalities)) if index not in chosen]
    if missing and not model.supports_missing_modalities:
        return f"This model needs every modality; select the {', '.join(missing)} volume."
    return ""
