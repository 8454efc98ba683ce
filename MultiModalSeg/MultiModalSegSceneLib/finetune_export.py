"""Cases for fine-tuning, from segmentation nodes and their volumes to files and a JSON case list.

The backend's ``finetune`` reads a case list::

    [{"id": "case1", "images": {"arterial": "/abs/case1/arterial.nii.gz", ...},
      "label": "/abs/case1/label.nii.gz"},
     {"id": "case2", "images": {...}, "label": null}]

A labeled case is a (corrected) segmentation plus its input volumes; an unlabeled case
(another loaded study, used by DTC's consistency loss) has ``"label": null``. Paths are
absolute, since the backend runs in another process and working directory.

The label file lies on the grid of the case's reference volume (the model's reference
modality, else the segmentation's reference geometry volume, else the first image), and
each voxel holds the manifest value of the segment covering it: segments are matched to
labels by name, ignoring case and surrounding spaces. Where segments overlap, the later
label in the manifest wins (a tumor inside the liver stays tumor). A segment whose name is
not a label is an error by default, because training on a silently dropped structure
teaches the model that it is background.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import slicer
from slicer.util import arrayFromVolume, updateVolumeFromArray

from .errors import SceneLogicError
from .segment_labels import SegmentLabel, parse_labels
from .volume_files import export_volume_node

__all__ = [
    "CASE_LIST_FILE_NAME",
    "LabeledCase",
    "UnlabeledCase",
    "export_finetune_cases",
    "export_labelmap",
    "segment_ids_for_labels",
]

CASE_LIST_FILE_NAME = "cases.json"


@dataclass
class LabeledCase:
    """A corrected segmentation and its input volumes by modality."""

    case_id: str
    segmentation_node: slicer.vtkMRMLSegmentationNode
    volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode]


@dataclass
class UnlabeledCase:
    """Input volumes by modality, without a segmentation (semi-supervised fine-tuning)."""

    case_id: str
    volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode]


def _normalized(name: str) -> str:
    return " ".join(name.split()).lower()


def segment_ids_for_labels(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    labels: Sequence[SegmentLabel],
    unknown_segments: str = "error",
) -> dict[int, str]:
    """Segment ID of each label value, matching segment names to label names.

    ``unknown_segments``: ``"error"`` raises for a segment whose name is no label;
    ``"ignore"`` leaves such segments out. Labels without a segment are absent from the result.
    """
    if unknown_segments not in ("error", "ignore"):
        raise ValueError(f"unknown_segments must be 'error' or 'ignore', not {unknown_segments!r}")
    value_by_name = {_normalized(label.name): label.value for label in labels}
    segmentation = segmentation_node.GetSegmentation()
    ids: dict[int, str] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = segmentation.GetNthSegment(index).GetName()
        value = value_by_name.get(_normalized(name))
        if value is None:
            if unknown_segments == "error":
                raise SceneLogicError(
                    f"Segment '{name}' of '{segmentation_node.GetName()}' is not one of the model's labels "
                    f"({', '.join(label.name for label in labels)}); rename it to one of them or delete it.")
            continue
        if value in ids:
            raise SceneLogicError(
                f"Two segments of '{segmentation_node.GetName()}' are named '{name}'; merge them (Segment Editor, "
                "Logical operators) or rename one.")
        ids[value] = segment_id
    return ids


def export_labelmap(
    scene: slicer.vtkMRMLScene,
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    reference_volume_node: slicer.vtkMRMLVolumeNode,
    labels: Iterable[Mapping[str, Any] | SegmentLabel],
    path: str | Path,
    unknown_segments: str = "error",
) -> Path:
    """Write the segmentation as a label map file on ``reference_volume_node``'s grid, with manifest values.

    Raises :class:`SceneLogicError` if no labeled segment has any voxel (nothing to learn from).
    """
    parsed = parse_labels(labels)
    ids_by_value = segment_ids_for_labels(segmentation_node, parsed, unknown_segments)
    node_ids_before = {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__finetune_label__")
    try:
        merged: np.ndarray | None = None
        for label in parsed:  # manifest order: later labels overwrite earlier ones where they overlap
            segment_id = ids_by_value.get(label.value)
            if segment_id is None:
                continue
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    segmentation_node, [segment_id], labelmap_node, reference_volume_node,
                    slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise SceneLogicError(
                    f"Could not export segment '{label.name}' of '{segmentation_node.GetName()}' onto the grid of "
                    f"'{reference_volume_node.GetName()}'; check that the segmentation overlaps that volume.")
            mask = arrayFromVolume(labelmap_node) > 0
            if merged is None:
                merged = np.zeros(mask.shape, dtype=np.uint8)
            merged[mask] = label.value
        if merged is None or not merged.any():
            raise SceneLogicError(
                f"Segmentation '{segmentation_node.GetName()}' has no voxels in its labeled segments; paint the "
                "structures first, or add the case as unlabeled.")
        updateVolumeFromArray(labelmap_node, merged)
        # The export gave the label map the reference's local grid; written with the reference's
        # transform, it lands where the images land (they are written in world geometry).
        labelmap_node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
        return export_volume_node(labelmap_node, path)
    finally:
        # The temporary label map and whatever the export added for it (display node, color table).
        temporary = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
        for node in temporary:
            if node.GetID() not in node_ids_before:
                scene.RemoveNode(node)


def _folder_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("._") or "case"


def _export_images(volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode], folder: Path, case_id: str) -> dict[str, str]:
    images = {modality: node for modality, node in volume_nodes.items() if node is not None}
    if not images:
        raise SceneLogicError(f"Case '{case_id}' has no image volume; select at least one input volume for it.")
    return {modality: str(export_volume_node(node, folder / f"{_folder_name(modality)}.nii.gz"))
            for modality, node in images.items()}


def _reference_volume(case: LabeledCase, reference_modality: str | None) -> slicer.vtkMRMLVolumeNode:
    volumes = {modality: node for modality, node in case.volume_nodes.items() if node is not None}
    if reference_modality and volumes.get(reference_modality) is not None:
        return volumes[reference_modality]
    geometry_reference = case.segmentation_node.GetNodeReference(
        case.segmentation_node.GetReferenceImageGeometryReferenceRole())
    for node in volumes.values():
        if geometry_reference is not None and node.GetID() == geometry_reference.GetID():
            return node
    return next(iter(volumes.values()))


def export_finetune_cases(
    scene: slicer.vtkMRMLScene,
    output_folder: str | Path,
    labels: Iterable[Mapping[str, Any] | SegmentLabel],
    labeled_cases: Sequence[LabeledCase],
    unlabeled_cases: Sequence[UnlabeledCase] = (),
    reference_modality: str | None = None,
    unknown_segments: str = "error",
) -> Path:
    """Write each case to ``output_folder/<case id>/`` and the case list to ``output_folder/cases.json``.

    Images are written as ``<modality>.nii.gz`` (world geometry, see :func:`.volume_files.export_volume_node`),
    labels as ``label.nii.gz`` with manifest values (see :func:`export_labelmap`). Returns the
    path of ``cases.json``.
    """
    parsed = parse_labels(labels)
    if not labeled_cases:
        raise SceneLogicError("Fine-tuning needs at least one labeled case; select a corrected segmentation.")
    output_folder = Path(output_folder).absolute()
    case_ids = [case.case_id for case in [*labeled_cases, *unlabeled_cases]]
    folders = [_folder_name(case_id).lower() for case_id in case_ids]
    if len(set(folders)) != len(folders):
        raise SceneLogicError(f"Case names {case_ids} repeat (ignoring case and punctuation); give every case its own name.")

    entries: list[dict[str, Any]] = []
    for case in labeled_cases:
        folder = output_folder / _folder_name(case.case_id)
        images = _export_images(case.volume_nodes, folder, case.case_id)
        label_path = export_labelmap(scene, case.segmentation_node, _reference_volume(case, reference_modality),
                                     parsed, folder / "label.nii.gz", unknown_segments)
        entries.append({"id": case.case_id, "images": images, "label": str(label_path)})
    for case in unlabeled_cases:
        folder = output_folder / _folder_name(case.case_id)
        entries.append({"id": case.case_id, "images": _export_images(case.volume_nodes, folder, case.case_id),
                        "label": None})

    case_list_path = output_folder / CASE_LIST_FILE_NAME
    case_list_path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return case_list_path
