"""The model's labels (value, name, color, terminology) as read from result.json or a manifest.

``labels`` lists the foreground labels in class order (docs/architecture.md):
``[{"value": 1, "name": "liver", "color": [0.86, 0.55, 0.39], "terminology": {...}}, ...]``.
``value`` is the voxel value in the label map, ``name`` the segment name in Slicer, and
``color`` RGB in [0, 1] (0-255 integers are accepted too). This module checks that list
once, so the importer and the fine-tune exporter can rely on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SceneLogicError
from .terminology import terminology_tag

__all__ = ["DEFAULT_SEGMENT_COLORS", "SegmentLabel", "parse_labels"]

DEFAULT_SEGMENT_COLORS = (
    (0.50, 0.68, 0.50),
    (0.95, 0.84, 0.57),
    (0.69, 0.48, 0.39),
    (0.44, 0.58, 0.80),
    (0.85, 0.40, 0.40),
    (0.56, 0.43, 0.73),
)
"""Used when a label has no color: the first entries of Slicer's GenericAnatomyColors."""


@dataclass(frozen=True)
class SegmentLabel:
    """One foreground label of a model: its voxel value, segment name, color and terminology tag."""

    value: int
    name: str
    color: tuple[float, float, float]
    terminology: str | None = None


def _parse_color(color: Any, name: str, index: int) -> tuple[float, float, float]:
    if color is None:
        return DEFAULT_SEGMENT_COLORS[index % len(DEFAULT_SEGMENT_COLORS)]
    try:
        rgb = tuple(float(c) for c in color)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) not in (3, 4):
        raise SceneLogicError(f"Label '{name}' has color {color!r}; give it as [r, g, b] with values in [0, 1].")
    rgb = rgb[:3]
    if max(rgb) > 1.0:  # 0-255 integers
        rgb = tuple(c / 255.0 for c in rgb)
    if min(rgb) < 0.0 or max(rgb) > 1.0:
        raise SceneLogicError(f"Label '{name}' has color {color!r}; give it as [r, g, b] with values in [0, 1].")
    return rgb  # type: ignore[return-value]


def parse_labels(labels: Iterable[Mapping[str, Any] | SegmentLabel]) -> list[SegmentLabel]:
    """Check a ``labels`` list and return it as :class:`SegmentLabel` objects, in the given order.

    Values must be distinct integers from 1 to 255 and names distinct (case-insensitively,
    because segment names are matched that way when exporting fine-tune cases).
    """
    parsed: list[SegmentLabel] = []
    for index, label in enumerate(labels):
        if isinstance(label, SegmentLabel):
            parsed.append(label)
            continue
        if not isinstance(label, Mapping) or "value" not in label or "name" not in label:
            raise SceneLogicError(
                f"Label number {index + 1} is {label!r}; each label needs at least a 'value' and a 'name'.")
        name = str(label["name"]).strip()
        try:
            value = int(label["value"])
        except (TypeError, ValueError):
            value = -1
        if not name:
            raise SceneLogicError(f"Label number {index + 1} has an empty name; give every label a name.")
        if not 1 <= value <= 255 or value != label["value"]:
            raise SceneLogicError(
                f"Label '{name}' has value {label['value']!r}; label values are integers from 1 to 255 (0 is background).")
        parsed.append(SegmentLabel(
            value=value,
            name=name,
            color=_parse_color(label.get("color"), name, index),
            terminology=terminology_tag(label.get("terminology"), name),
        ))
    values = [label.value for label in parsed]
    names = [label.name.lower() for label in parsed]
    if len(set(values)) != len(values):
        raise SceneLogicError(f"Label values {values} repeat; give every label its own value.")
    if len(set(names)) != len(names):
        raise SceneLogicError(f"Label names {[label.name for label in parsed]} repeat; give every label its own name.")
    return parsed
