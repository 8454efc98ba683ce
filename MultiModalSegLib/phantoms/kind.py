"""What a phantom kind is: its modalities, labels, default grid and a description."""

from __future__ import annotations

from dataclasses import dataclass, field

APPEARANCES = ("standard", "shifted")


@dataclass(frozen=True)
class PhantomKind:
    """Facts about one phantom kind, for training scripts, the demo and the README.

    ``labels`` maps every label name, background included, to its voxel value;
    ``default_shape`` and ``default_spacing`` are in array order ``(z, y, x)`` (mm).
    A case drawn with another ``shape`` keeps the same field of view, so its spacing is
    ``default_spacing * default_shape / shape``.
    """

    name: str
    modalities: tuple[str, ...]
    reference_modality: str
    labels: dict[str, int]
    default_shape: tuple[int, int, int]
    default_spacing: tuple[float, float, float]
    description: str
    appearances: tuple[str, ...] = APPEARANCES
    label_colors: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def foreground_labels(self) -> dict[str, int]:
        """The labels without background, in increasing value order."""
        return {n: v for n, v in sorted(self.labels.items(), key=lambda item: item[1]) if v != 0}
