"""What the panel's overlay selector lists: one entry per overlay volume, titled for a clinician.

The scene logic marks every overlay volume with a key (``attention:venous``,
``probability:tumor``, ``level_set:tumor``, ``uncertainty``; see ``overlays.overlay_key``).
Here a key becomes the text of a selector entry ("Attention: venous", "Level set: tumor"),
and entries from several results in one scene are told apart by the node name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["OVERLAY_KIND_TITLES", "NO_OVERLAY_TEXT", "OverlayChoice", "overlay_title", "overlay_choices"]

OVERLAY_KIND_TITLES = {
    "attention": "Attention",
    "probability": "Probability",
    "uncertainty": "Uncertainty",
    "level_set": "Level set",
}
NO_OVERLAY_TEXT = "None"


@dataclass(frozen=True)
class OverlayChoice:
    """One selector entry: its text and the overlay volume's node id."""

    text: str
    node_id: str


def overlay_title(key: str) -> str:
    """``attention:venous`` -> ``Attention: venous``; ``uncertainty`` -> ``Uncertainty``."""
    kind, _, name = key.partition(":")
    title = OVERLAY_KIND_TITLES.get(kind, kind.replace("_", " ").capitalize())
    return f"{title}: {name}" if name else title


def overlay_choices(overlays: Iterable[tuple[str, str | None, str]]) -> list[OverlayChoice]:
    """Selector entries for ``(node_id, overlay key, node name)`` triples, in the given order.

    A volume without a key is titled by its name; a title that repeats (two results in the
    scene) gets the node name added.
    """
    items = [(node_id, overlay_title(key) if key else name, name) for node_id, key, name in overlays]
    counts: dict[str, int] = {}
    for _, title, _ in items:
        counts[title] = counts.get(title, 0) + 1
    return [OverlayChoice(text=f"{title} ({name})" if counts[title] > 1 else title, node_id=node_id)
            for node_id, title, name in items]
