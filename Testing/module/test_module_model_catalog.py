"""The model list and the summary of each model card that the panel shows."""

from __future__ import annotations

from pathlib import Path

from module_testing import TINY_MODEL_ID, tiny_maml_manifest

from MultiModalSeg.MultiModalSegModuleLib.model_catalog import (
    list_model_choices,
    model_card_summary,
    model_choice_from_manifest,
)


def test_the_card_summary_is_its_first_paragraph(tmp_path: Path) -> None:
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# MAML liver\n\n| a | b |\n|---|---|\n\nTrained on 200 phantom cases\nof two-phase CT.\n\n"
                    "## Limits\n\nNot for clinical use.\n", encoding="utf-8")
    assert model_card_summary(card) == "Trained on 200 phantom cases of two-phase CT."
    assert model_card_summary(tmp_path / "missing.md") == ""
    card.write_text("word " * 400, encoding="utf-8")
    assert len(model_card_summary(card, limit=100)) <= 100


def test_a_choice_from_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "MODEL_CARD.md").write_text("# x\n\nSegments liver <and> tumor.\n", encoding="utf-8")
    choice = model_choice_from_manifest(tiny_maml_manifest(), tmp_path, bundled=True)
    assert choice.model_id == TINY_MODEL_ID and choice.version == 1 and choice.method == "maml"
    assert choice.modality_names == ["arterial", "venous"]
    assert choice.modalities[1].patterns == ("*ven*", "*pv*")
    assert choice.labels == ("liver", "tumor") and [label["value"] for label in choice.label_entries] == [1, 2]
    assert choice.reference_modality == "venous" and choice.supports_missing_modalities
    assert choice.display_name() == f"Tiny untrained MAML for tests ({TINY_MODEL_ID} v1)"
    summary = choice.summary_html()
    for text in ("MAML (modality-aware mutual learning)", "1 (bundled)", "arterial, venous; a missing one may be left",
                 "liver, tumor", "none (random weights for tests)", "Segments liver &lt;and&gt; tumor."):
        assert text in summary


def test_listing_reads_the_packages_the_backend_finds(tiny_bundled_models: Path) -> None:
    choices = list_model_choices(search_paths=[tiny_bundled_models])
    assert [choice.model_id for choice in choices] == [TINY_MODEL_ID]
    assert "untrained two-phase MAML" in choices[0].card_summary
