"""The models the panel offers, each with the summary the panel shows.

The list comes from the backend's own lookup (``MultiModalSegLib.weights.find_model_packages``:
the current version of each model in the user's model store first, then the bundled
packages), read in Slicer's process: it reads ``manifest.json`` files only, imports neither
torch nor SimpleITK, and takes milliseconds, so the panel needs no subprocess to fill its
model selector. Running a model always happens in the backend process.

The summary says what a user must know before pressing Apply: method, version (and whether
it is a fine-tuned one), the modalities in channel order (and whether one may be missing),
the labels, what it was trained on, and the first paragraph of its ``MODEL_CARD.md``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .modality_matching import ModalitySpec, modality_specs_from_manifest

__all__ = ["ModelChoice", "model_choice_from_manifest", "list_model_choices", "model_card_summary"]

_CARD_SUMMARY_CHARACTERS = 600
_METHOD_TITLES = {"maml": "MAML (modality-aware mutual learning)", "dtc": "DTC (dual-task consistency)"}


@dataclass(frozen=True)
class ModelChoice:
    """One model package as the panel shows it."""

    model_id: str
    version: int
    method: str
    title: str
    modalities: tuple[ModalitySpec, ...]
    labels: tuple[str, ...]
    reference_modality: str
    supports_missing_modalities: bool
    trained_on: str
    bundled: bool
    folder: Path
    card_summary: str = ""
    label_entries: tuple[dict[str, Any], ...] = ()
    """The manifest's ``labels`` (value, name, color, terminology): fine-tuning matches segments to them."""

    @property
    def modality_names(self) -> list[str]:
        return [spec.name for spec in self.modalities]

    def display_name(self) -> str:
        """What the model selector lists: title, id and version."""
        return f"{self.title} ({self.model_id} v{self.version})"

    def summary_html(self) -> str:
        """The model card summary for the panel (rich text)."""
        origin = "bundled" if self.bundled else "fine-tuned, in your model store"
        missing = ("; a missing one may be left empty" if self.supports_missing_modalities and len(self.modalities) > 1
                   else "; all are needed")
        rows = [
            ("Method", _METHOD_TITLES.get(self.method, self.method)),
            ("Version", f"{self.version} ({origin})"),
            ("Modalities", ", ".join(self.modality_names) + missing),
            ("Labels", ", ".join(self.labels)),
        ]
        if self.trained_on:
            rows.append(("Trained on", self.trained_on))
        text = "<br>".join(f"<b>{html.escape(key)}:</b> {html.escape(value)}" for key, value in rows)
        if self.card_summary:
            text += f"<p>{html.escape(self.card_summary)}</p>"
        return text


def model_card_summary(card_path: str | Path, limit: int = _CARD_SUMMARY_CHARACTERS) -> str:
    """The first prose paragraph of a ``MODEL_CARD.md`` (headings, tables and lists skipped), shortened."""
    path = Path(card_path)
    if not path.is_file():
        return ""
    paragraph: list[str] = []
    for raw_line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw_line.strip()
        if not line:
            if paragraph:
                break
            continue
        if line.startswith(("#", "|", "-", "*", ">", "```", "<!--")):
            if paragraph:
                break
            continue
        paragraph.append(line)
    text = " ".join(paragraph)
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def model_choice_from_manifest(manifest: dict[str, Any], folder: str | Path, bundled: bool) -> ModelChoice:
    """A :class:`ModelChoice` from a manifest dict (see docs/architecture.md) and its package folder."""
    folder = Path(folder)
    modalities = tuple(modality_specs_from_manifest(manifest))
    provenance = manifest.get("provenance") or {}
    method = str(manifest.get("method", ""))
    return ModelChoice(
        model_id=str(manifest["id"]),
        version=int(manifest.get("version", 1)),
        method=method,
        title=str(manifest.get("title") or manifest["id"]),
        modalities=modalities,
        labels=tuple(str(label.get("name", "")) for label in manifest.get("labels") or []),
        reference_modality=str(manifest.get("reference_modality") or (modalities[0].name if modalities else "")),
        supports_missing_modalities=bool(manifest.get("supports_missing_modalities", method == "maml")),
        trained_on=str(provenance.get("data") or provenance.get("trained_on") or ""),
        bundled=bundled,
        folder=folder,
        card_summary=model_card_summary(folder / "MODEL_CARD.md"),
        label_entries=tuple(dict(label) for label in manifest.get("labels") or []),
    )


def list_model_choices(search_paths: Sequence[Path] | None = None) -> list[ModelChoice]:
    """Every usable model: current user versions first, then bundled ones (the backend's order).

    ``search_paths`` replaces the default lookup (tests). ``MultiModalSegLib`` must be
    importable (see :func:`.module_layout.ensure_library_importable`).
    """
    from MultiModalSegLib.weights import find_model_packages

    packages = find_model_packages(list(search_paths) if search_paths is not None else None)
    return [model_choice_from_manifest(package.manifest, package.folder, package.read_only) for package in packages]
