"""Which loaded volumes can be inputs, which model suits them, and how the input rows are filled.

Candidates are what the input selectors can show: nodes of exactly ``vtkMRMLScalarVolumeNode``
(the .ui's ``nodeTypes`` with ``showChildNodeTypes`` off, so label maps, vector/RGB, DWI and
tensor volumes are not listed), not hidden, not one of MultiModalSeg's own overlays, with one
scalar component. Auto-matching uses the same rule, so it never picks a volume the user cannot
see in the selector.

The default model is the one whose modality patterns match the loaded volumes best: most
modalities matched, then the larger share of its modalities matched, then the catalog's order
(the user's fine-tuned versions first, then the bundled models). With liver phases loaded that
is the liver model, not the first in alphabetical order.

Filling respects the user: a row the user set (a volume, or "(missing)") is never changed; a
row the panel filled keeps its volume while it exists; only the panel's empty rows are filled,
each with a volume no other row holds. A row whose user-chosen volume was deleted from the
scene becomes the panel's again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .modality_matching import VolumeEntry, match_volumes_to_modalities
from .model_catalog import ModelChoice
from .panel_parameters import INPUT_FROM_PANEL, INPUT_FROM_USER, MAX_INPUTS, PanelParameters
from .scene_logic import node_roles

__all__ = [
    "INPUT_NODE_CLASS",
    "is_input_candidate",
    "why_not_an_input",
    "candidate_volumes",
    "model_match_score",
    "default_model",
    "fill_input_rows",
]

INPUT_NODE_CLASS = "vtkMRMLScalarVolumeNode"
"""The selectors' node type (exact class: ``showChildNodeTypes`` is off in the .ui)."""


def why_not_an_input(node: Any) -> str:
    """Empty when ``node`` can be an input; else what it is, for a sentence ("a vector volume")."""
    if node.GetClassName() != INPUT_NODE_CLASS:
        kinds = {"vtkMRMLLabelMapVolumeNode": "a label map", "vtkMRMLVectorVolumeNode": "a vector (color) volume",
                 "vtkMRMLDiffusionWeightedVolumeNode": "a diffusion-weighted (DWI) volume",
                 "vtkMRMLDiffusionTensorVolumeNode": "a tensor volume"}
        return kinds.get(node.GetClassName(), f"a {node.GetClassName()}")
    if node.GetAttribute(node_roles.ROLE_ATTRIBUTE) == node_roles.ROLE_OVERLAY:
        return "a MultiModalSeg overlay"
    image = node.GetImageData()
    if image is not None and image.GetNumberOfScalarComponents() != 1:
        return f"a volume with {image.GetNumberOfScalarComponents()} components"
    return ""


def is_input_candidate(node: Any) -> bool:
    return not node.GetHideFromEditors() and not why_not_an_input(node)


def candidate_volumes(scene: Any) -> list[Any]:
    """The scene's volumes that can be inputs, in scene order."""
    nodes = (scene.GetNthNodeByClass(index, INPUT_NODE_CLASS)
             for index in range(scene.GetNumberOfNodesByClass(INPUT_NODE_CLASS)))
    return [node for node in nodes if is_input_candidate(node)]


def _entries(volumes: Sequence[Any]) -> list[VolumeEntry]:
    return [VolumeEntry(node.GetID(), node.GetName()) for node in volumes]


def model_match_score(model: ModelChoice, volumes: Sequence[Any]) -> tuple[int, float]:
    """(modalities matched, share of the model's modalities matched) for the loaded ``volumes``."""
    if not model.modalities:
        return (0, 0.0)
    matched = sum(1 for volume_id in match_volumes_to_modalities(_entries(volumes), model.modalities).values()
                  if volume_id is not None)
    return (matched, matched / len(model.modalities))


def default_model(models: Sequence[ModelChoice], volumes: Sequence[Any]) -> ModelChoice | None:
    """The model that fits ``volumes`` best; ties (and an empty scene) go to the first in ``models``."""
    if not models:
        return None
    return max(enumerate(models), key=lambda item: (*model_match_score(item[1], volumes), -item[0]))[1]


def fill_input_rows(parameters: PanelParameters, model: ModelChoice | None, volumes: Sequence[Any]) -> list[int]:
    """Fill the panel's empty rows of ``model`` from ``volumes`` by name; returns the rows filled."""
    if model is None:
        return []
    rows = range(min(len(model.modalities), MAX_INPUTS))
    for index in rows:  # a user's volume that was deleted: the row is the panel's again
        if parameters.input_origin(index) == INPUT_FROM_USER and parameters.input_volume(index) is None:
            parameters.set_input(index, None, INPUT_FROM_PANEL)
    open_rows = [index for index in rows
                 if parameters.input_origin(index) == INPUT_FROM_PANEL and parameters.input_volume(index) is None]
    if not open_rows:
        return []
    held = {node.GetID() for node in parameters.input_volumes() if node is not None}
    free = [node for node in volumes if node.GetID() not in held]
    # All the model's modalities take part, so a volume that fits another row better (``x_t1ce`` for
    # T1ce, even where that row is set) is not given to this one (T1, ``*t1*``).
    matches = match_volumes_to_modalities(_entries(free), [model.modalities[index] for index in rows])
    by_id = {node.GetID(): node for node in free}
    filled = []
    for index in open_rows:
        volume_id = matches.get(model.modalities[index].name)
        if volume_id is not None:
            parameters.set_input(index, by_id[volume_id], INPUT_FROM_PANEL)
            filled.append(index)
    return filled
