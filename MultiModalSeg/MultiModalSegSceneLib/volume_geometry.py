"""Voxel grids of volume nodes: IJK-to-RAS matrices, comparisons, world transforms.

Slicer places a voxel ``(i, j, k)`` of a volume node at ``IJKToRAS @ (i, j, k, 1)`` in
patient RAS millimetres. Two volumes share a grid when their dimensions and IJKToRAS
matrices agree; outputs of ``predict`` share the reference input's grid by contract, up
to the float32 rounding of the NIfTI header, so comparisons take a tolerance in mm.
"""

from __future__ import annotations

import numpy as np
import slicer
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from .errors import SceneLogicError

__all__ = [
    "GEOMETRY_TOLERANCE_MM",
    "ijk_to_ras_matrix",
    "ijk_to_world_matrix",
    "place_on_grid_of",
    "ras_of_ijk",
    "require_same_geometry",
    "same_geometry",
    "set_ijk_to_ras_matrix",
]

GEOMETRY_TOLERANCE_MM = 1e-3
"""Largest difference (mm, or unitless for direction cosines) still called the same grid.
NIfTI stores the grid in float32: 1e-3 covers its rounding for images up to ~10 m across."""


def ijk_to_ras_matrix(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's own 4x4 IJK-to-RAS matrix (parent transforms not applied)."""
    matrix = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_world_matrix(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """IJK-to-world RAS including a linear parent transform (what Slicer displays).

    Raises :class:`SceneLogicError` for a non-linear (warping) transform, whose voxel grid
    is not a grid any more.
    """
    ijk_to_ras = ijk_to_ras_matrix(volume_node)
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return ijk_to_ras
    if not transform_node.IsTransformToWorldLinear():
        raise SceneLogicError(
            f"Volume '{volume_node.GetName()}' is under a non-linear transform; harden the transform "
            "(Data module, right-click > Harden transform) before segmenting it.")
    to_world = vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(to_world)
    to_world_array = np.array([[to_world.GetElement(r, c) for c in range(4)] for r in range(4)])
    return to_world_array @ ijk_to_ras


def set_ijk_to_ras_matrix(volume_node: slicer.vtkMRMLVolumeNode, matrix: np.ndarray) -> None:
    """Set a node's IJK-to-RAS from a 4x4 array (spacing, origin and directions at once)."""
    vtk_matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vtk_matrix.SetElement(r, c, float(matrix[r, c]))
    volume_node.SetIJKToRASMatrix(vtk_matrix)


def ras_of_ijk(volume_node: slicer.vtkMRMLVolumeNode, ijk: tuple[float, float, float]) -> np.ndarray:
    """RAS position (mm) of voxel index ``(i, j, k)``; note numpy arrays index ``[k, j, i]``."""
    return (ijk_to_world_matrix(volume_node) @ np.array([*ijk, 1.0]))[:3]


def _dimensions(volume_node: slicer.vtkMRMLVolumeNode) -> tuple[int, int, int] | None:
    image = volume_node.GetImageData()
    return tuple(image.GetDimensions()) if image is not None else None


def same_geometry(
    first: slicer.vtkMRMLVolumeNode,
    second: slicer.vtkMRMLVolumeNode,
    tolerance_mm: float = GEOMETRY_TOLERANCE_MM,
) -> bool:
    """True when both volumes have the same dimensions and world IJK-to-RAS within tolerance."""
    if _dimensions(first) != _dimensions(second):
        return False
    return bool(np.allclose(ijk_to_world_matrix(first), ijk_to_world_matrix(second), rtol=0.0, atol=tolerance_mm))


def require_same_geometry(
    reference: slicer.vtkMRMLVolumeNode,
    other: slicer.vtkMRMLVolumeNode,
    what: str,
    tolerance_mm: float = GEOMETRY_TOLERANCE_MM,
) -> None:
    """Raise :class:`SceneLogicError` unless ``other`` lies on ``reference``'s voxel grid.

    ``what`` names the other volume in the message (for example "the label map").
    """
    if same_geometry(reference, other, tolerance_mm):
        return
    raise SceneLogicError(
        f"{what[:1].upper()}{what[1:]} (size {_dimensions(other)}) does not lie on the voxel grid of "
        f"'{reference.GetName()}' (size {_dimensions(reference)}); the result folder belongs to another "
        "image: run the segmentation again on this volume, or load the image it was made from.")


def place_on_grid_of(volume_node: slicer.vtkMRMLVolumeNode, reference: slicer.vtkMRMLVolumeNode, what: str) -> None:
    """Put ``volume_node`` exactly on ``reference``'s voxel grid and under its parent transform.

    Outputs of ``predict`` were computed on the reference input's grid as written to the file
    (world geometry, transform baked in). This checks that the output's grid matches that
    world grid within tolerance, then gives it the reference's *local* IJK-to-RAS (removing
    the float32 rounding of the NIfTI header) and the same parent transform, so both move
    together if the user edits the transform. ``what`` names the volume in the error message.
    """
    require_same_geometry(reference, volume_node, what)
    set_ijk_to_ras_matrix(volume_node, ijk_to_ras_matrix(reference))
    volume_node.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
