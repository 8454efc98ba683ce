"""The cases the Fine-tune section offers: corrected segmentations (labeled) and other studies (unlabeled).

Labeled: every segmentation in the scene except the level sets' zero contours; the panel's
current output is checked first. A segmentation's volumes are the panel's current inputs
when it is the current output, else the case (study, or name group) holding the volume it
was made on (its reference geometry). Unlabeled: the other cases in the scene, grouped by
``modality_matching.group_volumes_into_cases`` (the subject-hierarchy study of a volume when
it has one, else its name without the last part), checked when every modality is there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .modality_matching import CaseCandidate, VolumeEntry, group_volumes_into_cases
from .model_catalog import ModelChoice
from .scene_logic import node_roles

__all__ = ["CaseChoice", "FinetuneCases", "study_of", "cases_in_scene", "volumes_of_segmentation", "list_cases"]


@dataclass
class CaseChoice:
    """One row of a case list: its text, whether it is checked, and what it stands for."""

    text: str
    checked: bool
    node_id: str = ""
    """Labeled rows: the segmentation node's id."""
    candidate: CaseCandidate | None = None
    """Unlabeled rows: the volumes of the case by modality."""


@dataclass
class FinetuneCases:
    labeled: list[CaseChoice] = field(default_factory=list)
    unlabeled: list[CaseChoice] = field(default_factory=list)


def study_of(scene: Any, node: Any) -> str:
    """The name of the subject-hierarchy study (or folder) holding ``node``; empty if none."""
    hierarchy = scene.GetSubjectHierarchyNode()
    if hierarchy is None:
        return ""
    item = hierarchy.GetItemByDataNode(node)
    parent = hierarchy.GetItemParent(item) if item else 0
    if not parent or parent == hierarchy.GetSceneItemID():
        return ""
    return hierarchy.GetItemName(parent)


def cases_in_scene(scene: Any, volumes: Sequence[Any], model: ModelChoice) -> list[CaseCandidate]:
    return group_volumes_into_cases(
        [VolumeEntry(node.GetID(), node.GetName(), study_of(scene, node)) for node in volumes], model.modalities)


def volumes_of_segmentation(scene: Any, segmentation: Any, model: ModelChoice, volumes: Sequence[Any],
                            current_output: Any, current_inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Modality -> volume node of the case ``segmentation`` was made on (empty when unknown)."""
    if current_output is not None and segmentation.GetID() == current_output.GetID():
        selected = {modality: node for modality, node in current_inputs.items() if node is not None}
        if selected:
            return selected
    reference = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
    if reference is None:
        return {}
    for candidate in cases_in_scene(scene, volumes, model):
        if reference.GetID() in candidate.volumes.values():
            return {modality: scene.GetNodeByID(volume_id) for modality, volume_id in candidate.volumes.items()}
    return {}


def list_cases(scene: Any, model: ModelChoice | None, volumes: Sequence[Any], current_output: Any,
               current_inputs: Mapping[str, Any]) -> FinetuneCases:
    """The labeled and unlabeled case rows for ``model``, with their default check states."""
    cases = FinetuneCases()
    labeled_volume_ids: set[str] = set()
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        if node.GetAttribute(node_roles.ROLE_ATTRIBUTE) == node_roles.ROLE_ZERO_CONTOUR or node.GetHideFromEditors():
            continue
        is_current = current_output is not None and node.GetID() == current_output.GetID()
        if is_current and model is not None:
            labeled_volume_ids |= {volume.GetID() for volume in volumes_of_segmentation(
                scene, node, model, volumes, current_output, current_inputs).values() if volume is not None}
        cases.labeled.append(CaseChoice(node.GetName(), is_current, node_id=node.GetID()))
    if model is not None:
        for candidate in cases_in_scene(scene, volumes, model):
            if labeled_volume_ids & set(candidate.volumes.values()):
                continue
            complete = len(candidate.volumes) == len(model.modalities)
            cases.unlabeled.append(CaseChoice(f"{candidate.name} ({', '.join(candidate.volumes)})", complete,
                                              candidate=candidate))
    return cases
