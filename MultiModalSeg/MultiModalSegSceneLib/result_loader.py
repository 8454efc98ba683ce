"""A ``predict`` output folder into the scene: inputs, segmentation and overlays.

The folder's ``result.json`` (docs/architecture.md) lists the model's labels, the input
images by modality, and the outputs (paths relative to the folder): ``labelmap``,
``probabilities`` and ``level_set`` by label name, ``attention`` by modality, and
``uncertainty``. All outputs lie on the grid of the reference modality's input.

Inside Slicer the module passes the input volume nodes it exported, so nothing is loaded
twice and the segmentation references the node the user picked. Headless (the scene
writer) the inputs are read from the paths in ``result.json``, or from paths the caller
gives instead (a result folder copied from another machine).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slicer

from .errors import SceneLogicError
from .node_roles import MODALITY_ATTRIBUTE, ROLE_ATTRIBUTE, ROLE_INPUT
from .overlays import configure_heat_overlay, configure_level_set_overlay, overlay_key
from .segment_labels import SegmentLabel, parse_labels
from .segmentation_import import import_labelmap_file_as_segmentation, replace_model_segments
from .volume_files import import_volume_file
from .volume_geometry import place_on_grid_of

__all__ = ["RESULT_FILE_NAME", "LoadedResult", "load_result", "read_result_json"]

RESULT_FILE_NAME = "result.json"

_log = logging.getLogger(__name__)


@dataclass
class LoadedResult:
    """What :func:`load_result` put into the scene.

    ``overlays`` maps :func:`.overlays.overlay_key` (``attention:venous``, ``probability:tumor``,
    ``level_set:tumor``, ``uncertainty``) to its volume node, in the order of ``result.json``;
    ``zero_contours`` maps a label name to its level set's zero-contour segmentation.
    """

    result_dir: Path
    result: dict[str, Any]
    labels: list[SegmentLabel]
    reference_modality: str | None
    input_volumes: dict[str, slicer.vtkMRMLScalarVolumeNode]
    reference_volume: slicer.vtkMRMLScalarVolumeNode | None
    segmentation: slicer.vtkMRMLSegmentationNode
    overlays: dict[str, slicer.vtkMRMLScalarVolumeNode] = field(default_factory=dict)
    zero_contours: dict[str, slicer.vtkMRMLSegmentationNode] = field(default_factory=dict)

    @property
    def background_volume(self) -> slicer.vtkMRMLScalarVolumeNode | None:
        """The volume to show behind the overlays: the reference input, else any input."""
        if self.reference_volume is not None:
            return self.reference_volume
        return next(iter(self.input_volumes.values()), None)


def read_result_json(result_dir: str | Path) -> dict[str, Any]:
    """Read and check ``result_dir/result.json``; raise :class:`SceneLogicError` if unusable."""
    result_path = Path(result_dir) / RESULT_FILE_NAME
    if not result_path.is_file():
        raise SceneLogicError(
            f"{result_path} does not exist; choose the output folder of a 'predict' run (it holds result.json).")
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SceneLogicError(f"{result_path} is not readable JSON ({error}); run the segmentation again.") from error
    if not isinstance(result, dict):
        raise SceneLogicError(f"{result_path} does not hold a JSON object; run the segmentation again.")
    outputs = result.get("outputs")
    if not isinstance(outputs, dict) or not outputs.get("labelmap"):
        raise SceneLogicError(f"{result_path} lists no 'outputs.labelmap'; run the segmentation again.")
    if not isinstance(result.get("labels"), list):
        raise SceneLogicError(f"{result_path} has no 'labels' list; run the segmentation again with a valid model.")
    return result


def _output_path(result_dir: Path, relative: str) -> Path:
    path = Path(relative)
    path = path if path.is_absolute() else result_dir / path
    if not path.is_file():
        raise SceneLogicError(
            f"Output file {path} listed in result.json is missing; copy the whole result folder or run the "
            "segmentation again.")
    return path


def _load_inputs(
    scene: slicer.vtkMRMLScene,
    result_dir: Path,
    result: Mapping[str, Any],
    input_paths: Mapping[str, str | Path] | None,
    name_prefix: str,
) -> dict[str, slicer.vtkMRMLScalarVolumeNode]:
    paths = dict(result.get("inputs") or {})
    paths.update(input_paths or {})
    volumes: dict[str, slicer.vtkMRMLScalarVolumeNode] = {}
    for modality, path in paths.items():
        path = Path(path)
        path = path if path.is_absolute() else result_dir / path
        if not path.is_file():
            _log.warning("Input image %s (%s) is missing; the scene will not show it.", path, modality)
            continue
        volumes[modality] = import_volume_file(scene, path, name=f"{name_prefix}{modality}")
    return volumes


def load_result(
    scene: slicer.vtkMRMLScene,
    result_dir: str | Path,
    input_volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode] | None = None,
    input_paths: Mapping[str, str | Path] | None = None,
    name_prefix: str = "",
    segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
) -> LoadedResult:
    """Load a ``predict`` output folder into ``scene``.

    ``input_volume_nodes``: the input volumes by modality, already in the scene (Slicer
    module). Without them the inputs are read from ``input_paths`` (modality -> file),
    falling back to the paths in ``result.json``; missing input files are skipped with a
    warning. ``name_prefix`` starts every new node's name (for example the case name).
    ``segmentation_node``: the user's chosen output segmentation; the model's segments
    replace the segments of the same name there and the user's other segments are kept
    (see :func:`replace_model_segments`). Without it a new segmentation node is made.

    The label map becomes a segmentation referenced to the reference modality's volume
    (when available); every output map becomes an overlay volume on that volume's grid.
    Raises :class:`SceneLogicError` when an output is missing or lies on another grid.
    """
    result_dir = Path(result_dir).absolute()
    result = read_result_json(result_dir)
    labels = parse_labels(result["labels"])
    outputs = result["outputs"]
    reference_modality = result.get("reference_modality")

    if input_volume_nodes is not None:
        input_volumes = {modality: node for modality, node in input_volume_nodes.items() if node is not None}
    else:
        input_volumes = _load_inputs(scene, result_dir, result, input_paths, name_prefix)
    for modality, volume_node in input_volumes.items():
        volume_node.SetAttribute(ROLE_ATTRIBUTE, ROLE_INPUT)
        volume_node.SetAttribute(MODALITY_ATTRIBUTE, modality)
    reference_volume = input_volumes.get(reference_modality) if reference_modality else None
    if reference_volume is None and len(input_volumes) == 1 and not reference_modality:
        reference_volume = next(iter(input_volumes.values()))
    if reference_volume is None:
        _log.warning("The reference input (%s) is not loaded; outputs keep the grid stored in their files.",
                     reference_modality)

    model_id = (result.get("model") or {}).get("id") or "MultiModalSeg"
    segmentation = import_labelmap_file_as_segmentation(
        scene, _output_path(result_dir, outputs["labelmap"]), labels, reference_volume,
        name=f"{name_prefix}{model_id} segmentation")
    if segmentation_node is not None:
        try:
            replace_model_segments(segmentation_node, segmentation, labels)
        finally:
            display_node = segmentation.GetDisplayNode()
            if display_node is not None:
                scene.RemoveNode(display_node)
            scene.RemoveNode(segmentation)
        segmentation = segmentation_node
    loaded = LoadedResult(
        result_dir=result_dir, result=result, labels=labels, reference_modality=reference_modality,
        input_volumes=input_volumes, reference_volume=reference_volume, segmentation=segmentation)

    def load_overlay(relative: str, kind: str, name: str, node_name: str) -> slicer.vtkMRMLScalarVolumeNode:
        volume_node = import_volume_file(scene, _output_path(result_dir, relative), name=f"{name_prefix}{node_name}")
        if reference_volume is not None:
            place_on_grid_of(volume_node, reference_volume, f"the {node_name} map")
        loaded.overlays[overlay_key(kind, name)] = volume_node
        return volume_node

    for modality, relative in (outputs.get("attention") or {}).items():
        configure_heat_overlay(scene, load_overlay(relative, "attention", modality, f"{modality} attention"),
                               "attention", modality)
    for label_name, relative in (outputs.get("probabilities") or {}).items():
        configure_heat_overlay(scene, load_overlay(relative, "probability", label_name, f"{label_name} probability"),
                               "probability", label_name)
    if outputs.get("uncertainty"):
        configure_heat_overlay(scene, load_overlay(outputs["uncertainty"], "uncertainty", "", "uncertainty"),
                               "uncertainty")
    for label_name, relative in (outputs.get("level_set") or {}).items():
        level_set_node = load_overlay(relative, "level_set", label_name, f"{label_name} level set")
        loaded.zero_contours[label_name] = configure_level_set_overlay(scene, level_set_node, label_name)
    return loaded
