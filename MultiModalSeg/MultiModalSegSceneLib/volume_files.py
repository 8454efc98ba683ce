"""Volume nodes to image files and back, through Slicer's own storage node.

Slicer shows patients in RAS; NIfTI and NRRD files (and SimpleITK, and the backend) use
LPS. ``vtkMRMLVolumeArchetypeStorageNode`` converts between the two on every read and
write (it flips the first two axes of the IJK-to-RAS matrix), so a file written here
opens in ITK-based tools at the same physical place, and a file the backend writes comes
back into the scene on the voxel grid it was computed on. Going through the storage node
rather than numpy keeps that conversion in one place, Slicer's.

A volume under a linear parent transform is written where Slicer shows it: the transform
is baked into the file's geometry. A non-linear transform must be hardened first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import slicer

from .errors import SceneLogicError
from .volume_geometry import ijk_to_world_matrix, set_ijk_to_ras_matrix

__all__ = ["VOLUME_FILE_SUFFIXES", "export_input_volumes", "export_volume_node", "file_stem", "import_volume_file"]

VOLUME_FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File types the archetype storage node reads and writes losslessly with full geometry."""


def file_stem(path: str | Path) -> str:
    """File name without its volume suffix: ``case/venous.nii.gz`` -> ``venous``."""
    name = Path(path).name
    for suffix in (".seg.nrrd",) + VOLUME_FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _require_volume_suffix(path: Path) -> None:
    if not path.name.lower().endswith(VOLUME_FILE_SUFFIXES):
        raise SceneLogicError(
            f"Cannot write a volume to '{path.name}': use a file name ending in one of "
            f"{', '.join(VOLUME_FILE_SUFFIXES)} (for example venous.nii.gz).")


def export_volume_node(volume_node: slicer.vtkMRMLScalarVolumeNode, path: str | Path) -> Path:
    """Write a scalar (or label map) volume node to ``path`` (NIfTI ``.nii.gz`` recommended).

    The file holds the node's voxels unchanged and its geometry in LPS, with a linear parent
    transform baked in. The node and its own storage node are left untouched, so exporting
    for a background process does not change where Slicer would save the volume. Returns
    the absolute path written.
    """
    path = Path(path).absolute()
    _require_volume_suffix(path)
    if volume_node is None or volume_node.GetImageData() is None:
        name = volume_node.GetName() if volume_node is not None else "(none)"
        raise SceneLogicError(f"Volume '{name}' has no image data; load or select an image volume first.")
    components = volume_node.GetImageData().GetNumberOfScalarComponents()
    if components != 1:
        raise SceneLogicError(
            f"Volume '{volume_node.GetName()}' has {components} components per voxel; the models take "
            "single-channel images: convert it with the 'Vector to Scalar Volume' module first.")

    # A detached twin sharing the voxels, with the world geometry (parent transform baked in).
    twin = volume_node.NewInstance()
    twin.SetName(volume_node.GetName())
    twin.SetAndObserveImageData(volume_node.GetImageData())
    set_ijk_to_ras_matrix(twin, ijk_to_world_matrix(volume_node))

    path.parent.mkdir(parents=True, exist_ok=True)
    storage_node = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage_node.SetFileName(str(path))
    storage_node.SetUseCompression(True)
    if not storage_node.WriteData(twin):
        raise SceneLogicError(
            f"Could not write volume '{volume_node.GetName()}' to {path}; check that the folder is "
            "writable and the disk has free space.")
    return path


def export_input_volumes(
    volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode | None],
    folder: str | Path,
) -> dict[str, Path]:
    """Write each modality's input volume to ``folder/<modality>.nii.gz`` for ``predict --input``.

    Modalities without a volume (``None``: missing, allowed for MAML) are left out. Returns
    modality -> absolute path, ready for ``--input arterial=<path>``.
    """
    paths: dict[str, Path] = {}
    for modality, volume_node in volume_nodes.items():
        if volume_node is None:
            continue
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", modality).strip("._") or "image"
        paths[modality] = export_volume_node(volume_node, Path(folder) / f"{safe_name}.nii.gz")
    if not paths:
        raise SceneLogicError("No input volume is selected; select at least one image volume for the model's modalities.")
    return paths


def import_volume_file(
    scene: slicer.vtkMRMLScene,
    path: str | Path,
    name: str | None = None,
    labelmap: bool = False,
    keep_storage_node: bool = False,
) -> slicer.vtkMRMLScalarVolumeNode:
    """Read an image file into a new scalar volume node (or label map node) in ``scene``.

    ``name`` defaults to the file name without its suffix. By default the storage node is
    removed after reading: outputs live in a temporary folder that the module deletes, so
    Slicer must treat the node as new data (and save it next to the scene), not as a file
    it can re-read. The node gets its default display node.
    """
    path = Path(path).absolute()
    if not path.is_file():
        raise SceneLogicError(f"Image file {path} does not exist; check the path or run the segmentation again.")
    node_class = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    volume_node = scene.AddNewNodeByClass(node_class, name or file_stem(path))
    storage_node = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage_node.SetFileName(str(path))
    storage_node.SetSingleFile(True)  # never pick up look-alike files in the same folder as a series
    volume_node.SetAndObserveStorageNodeID(storage_node.GetID())
    if not storage_node.ReadData(volume_node):
        scene.RemoveNode(storage_node)
        scene.RemoveNode(volume_node)
        raise SceneLogicError(
            f"Could not read {path} as an image; check that it is a NIfTI or NRRD file and not damaged.")
    if not keep_storage_node:
        volume_node.SetAndObserveStorageNodeID(None)
        scene.RemoveNode(storage_node)
    volume_node.CreateDefaultDisplayNodes()
    return volume_node
