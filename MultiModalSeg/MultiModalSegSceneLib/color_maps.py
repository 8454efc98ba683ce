"""The two color maps of the overlays: a heat map and a blue-white-red diverging map.

Slicer's file-based color tables ("Inferno", "ColdToHotRainbow", "DivergingBlueRed") come
from its share folder, which the ``slicer-core`` wheel does not ship; the procedural ones
it does ship (PET-Heat, ...) have fixed shapes. So the overlays use two
``vtkMRMLProceduralColorNode`` s of their own, added to the scene once (found again by
name) and saved with it as small ``.txt`` color files, so a saved scene opens in Slicer
with exactly these colors.

A scalar volume display node stretches a procedural map over its window
(``level - window/2`` to ``level + window/2``), whatever the map's own point positions;
the points below are therefore given on [0, 1].
"""

from __future__ import annotations

import slicer

__all__ = [
    "DIVERGING_COLOR_NODE_NAME",
    "DIVERGING_COLOR_POINTS",
    "HEAT_COLOR_NODE_NAME",
    "HEAT_COLOR_POINTS",
    "diverging_color_node",
    "heat_color_node",
]

HEAT_COLOR_NODE_NAME = "MultiModalSeg Heat"
DIVERGING_COLOR_NODE_NAME = "MultiModalSeg Diverging"

HEAT_COLOR_POINTS = (
    (0.00, (0.35, 0.00, 0.05)),
    (0.35, (0.85, 0.10, 0.05)),
    (0.70, (1.00, 0.60, 0.00)),
    (1.00, (1.00, 1.00, 0.25)),
)
"""Dark red -> red -> orange -> yellow ("hot" without the black start, which would only darken
the image under it; without a white end, which would look like grey tissue)."""

DIVERGING_COLOR_POINTS = (
    (0.0, (0.23, 0.30, 0.75)),
    (0.5, (1.00, 1.00, 1.00)),
    (1.0, (0.71, 0.02, 0.15)),
)
"""Blue -> white -> red (the end points of Moreland's cool-warm map). White sits at the middle
of the window, which the level-set display centres on 0: blue inside, red outside."""


def _procedural_color_node(
    scene: slicer.vtkMRMLScene,
    name: str,
    points: tuple[tuple[float, tuple[float, float, float]], ...],
    description: str,
) -> slicer.vtkMRMLProceduralColorNode:
    existing = scene.GetFirstNodeByName(name)
    if existing is not None and existing.IsA("vtkMRMLProceduralColorNode"):
        return existing
    color_node = slicer.vtkMRMLProceduralColorNode()
    color_node.SetName(name)
    color_node.SetDescription(description)
    color_node.SetAttribute("Category", "MultiModalSeg")
    transfer_function = color_node.GetColorTransferFunction()
    transfer_function.RemoveAllPoints()
    for position, (red, green, blue) in points:
        transfer_function.AddRGBPoint(position, red, green, blue)
    transfer_function.SetColorSpaceToRGB()
    scene.AddNode(color_node)
    return color_node


def heat_color_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLProceduralColorNode:
    """The heat map for attention, probability and uncertainty overlays (added on first use)."""
    return _procedural_color_node(
        scene, HEAT_COLOR_NODE_NAME, HEAT_COLOR_POINTS,
        "Heat map of MultiModalSeg overlays: attention, probability, uncertainty.")


def diverging_color_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLProceduralColorNode:
    """The blue-white-red map for level sets (added on first use)."""
    return _procedural_color_node(
        scene, DIVERGING_COLOR_NODE_NAME, DIVERGING_COLOR_POINTS,
        "Diverging map of MultiModalSeg level sets: blue inside (< 0), white on the contour, red outside.")
