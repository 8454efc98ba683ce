"""Save a scene as a ``.mrml`` file plus its data files, with paths relative to the scene.

``vtkMRMLScene::Commit`` writes only the XML; each node's data (voxels, segments, color
points) is written by its storage node. This does both, as Slicer's Save dialog does:
every storable node that is saved with the scene gets a file in a data folder beside the
``.mrml`` (volumes as ``.nii.gz``, segmentations as ``.seg.nrrd``, color maps as ``.txt``),
then the scene is committed with its root directory set, so the file names in the XML are
relative and the folder can be moved, zipped or opened on another computer.
"""

from __future__ import annotations

import re
from pathlib import Path

import slicer

from .errors import SceneLogicError

__all__ = ["data_file_suffix", "load_scene", "save_scene"]


def data_file_suffix(node: slicer.vtkMRMLStorableNode, storage_node: slicer.vtkMRMLStorageNode) -> str:
    """File suffix for a node's data: NIfTI for volumes, ``.seg.nrrd`` for segmentations."""
    if node.IsA("vtkMRMLScalarVolumeNode") and node.GetImageData() is not None \
            and node.GetImageData().GetNumberOfScalarComponents() == 1:
        return ".nii.gz"
    if node.IsA("vtkMRMLSegmentationNode"):
        return ".seg.nrrd"
    return "." + (storage_node.GetDefaultWriteFileExtension() or "dat")


def _safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "node"


def save_scene(
    scene: slicer.vtkMRMLScene,
    mrml_path: str | Path,
    data_folder: str | Path | None = None,
) -> Path:
    """Write every data node of ``scene`` to files and the scene to ``mrml_path``; return its path.

    ``data_folder`` defaults to ``<scene name>_data`` beside the ``.mrml`` file; it must lie
    inside the scene's folder for the paths to stay relative.
    """
    mrml_path = Path(mrml_path).absolute()
    if mrml_path.suffix.lower() != ".mrml":
        raise SceneLogicError(f"Cannot save a scene as '{mrml_path.name}'; use a file name ending in .mrml.")
    data_folder = Path(data_folder).absolute() if data_folder else mrml_path.parent / f"{mrml_path.stem}_data"
    data_folder.mkdir(parents=True, exist_ok=True)

    used_names: set[str] = set()
    nodes = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
    for node in nodes:
        if not node.IsA("vtkMRMLStorableNode") or not node.GetSaveWithScene():
            continue
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None:
            continue
        if node.GetStorageNode() is None:
            node.AddDefaultStorageNode()
        storage_node = node.GetStorageNode()
        if storage_node is None:
            continue
        suffix = data_file_suffix(node, storage_node)
        stem = _safe_file_name(node.GetName() or node.GetID())
        file_name = f"{stem}{suffix}"
        counter = 1
        while file_name.lower() in used_names:
            counter += 1
            file_name = f"{stem}_{counter}{suffix}"
        used_names.add(file_name.lower())
        storage_node.SetFileName(str(data_folder / file_name))
        if hasattr(storage_node, "SetUseCompression"):
            storage_node.SetUseCompression(True)
        if not storage_node.WriteData(node):
            raise SceneLogicError(
                f"Could not write '{node.GetName()}' to {data_folder / file_name}; check that the folder is "
                "writable and the disk has free space.")

    scene.SetRootDirectory(str(mrml_path.parent))
    scene.SetURL(str(mrml_path))
    if not scene.Commit():
        raise SceneLogicError(f"Could not write the scene file {mrml_path}; check that the folder is writable.")
    return mrml_path


def load_scene(scene: slicer.vtkMRMLScene, mrml_path: str | Path) -> slicer.vtkMRMLScene:
    """Add the nodes of a ``.mrml`` file (and read their data files) into ``scene``; return it."""
    mrml_path = Path(mrml_path).absolute()
    if not mrml_path.is_file():
        raise SceneLogicError(f"Scene file {mrml_path} does not exist; check the path.")
    scene.SetURL(str(mrml_path))
    if not scene.Import():
        raise SceneLogicError(f"Could not load the scene {mrml_path}; check that it and its data folder are complete.")
    return scene
