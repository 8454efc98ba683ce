"""The overlay selector's entries."""

from __future__ import annotations

from MultiModalSeg.MultiModalSegModuleLib.overlay_choices import OverlayChoice, overlay_choices, overlay_title


def test_titles_for_every_overlay_kind() -> None:
    assert overlay_title("attention:venous") == "Attention: venous"
    assert overlay_title("probability:tumor") == "Probability: tumor"
    assert overlay_title("level_set:left atrium") == "Level set: left atrium"
    assert overlay_title("uncertainty") == "Uncertainty"


def test_repeated_titles_are_told_apart_by_node_name() -> None:
    choices = overlay_choices([
        ("n1", "attention:venous", "venous attention"),
        ("n2", "uncertainty", "uncertainty"),
        ("n3", "uncertainty", "case2 uncertainty"),
        ("n4", None, "some map"),
    ])
    assert choices == [
        OverlayChoice("Attention: venous", "n1"),
        OverlayChoice("Uncertainty (uncertainty)", "n2"),
        OverlayChoice("Uncertainty (case2 uncertainty)", "n3"),
        OverlayChoice("some map", "n4"),
    ]
