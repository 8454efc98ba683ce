"""The manifest of a model package that training or fine-tuning writes, with its provenance.

The provenance answers "where does this model come from": the command line, the data specs
and case ids (labeled, unlabeled, validation), the seed, iterations, the training config, the
final loss terms, every validation result, which package this is (``selection``: ``best`` or
``last``) and the iteration and Dice of the best one, the software versions and the starting
package for a fine-tuned version. A Slicer user sees it in the model card.
"""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from MultiModalSegLib.training.data import LabelTable, ModalityTable


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def software_versions() -> dict[str, str]:
    import numpy
    import torch

    from MultiModalSegLib import __version__

    return {"MultiModalSegLib": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def build_manifest(*, model_id: str, version: int, method: str, title: str, modalities: ModalityTable,
                   labels: LabelTable, patch_size: tuple[int, int, int], architecture: dict[str, Any],
                   preprocessing: dict[str, Any] | None, provenance: dict[str, Any]) -> dict[str, Any]:
    """A complete manifest (weights' sha256 is filled in by ``save_model_package``)."""
    return {
        "format_version": 1,
        "id": model_id,
        "version": int(version),
        "method": method,
        "title": title,
        "modalities": modalities.manifest_modalities(),
        "reference_modality": modalities.reference,
        "labels": labels.manifest_labels(),
        "preprocessing": dict(preprocessing or {}),
        "patch_size": [int(v) for v in patch_size],
        "architecture": architecture,
        "weights": {},
        "supports_missing_modalities": method == "maml",
        "provenance": {"created": utc_now(), **provenance, "software": software_versions()},
    }


def model_card(manifest: dict[str, Any]) -> str:
    """A short Markdown card: what the model segments, from which data, how well, how it was made."""
    provenance = manifest.get("provenance", {})
    labels = ", ".join(label["name"] for label in manifest["labels"])
    modalities = ", ".join(m["name"] for m in manifest["modalities"])
    lines = [
        f"# {manifest.get('title', manifest['id'])}",
        "",
        f"* id / version: `{manifest['id']}` v{manifest['version']} ({provenance.get('selection', 'model')})",
        f"* method: {manifest['method'].upper()}; modalities: {modalities}; labels: {labels}",
        f"* patch size (z, y, x): {manifest['patch_size']}",
        f"* created: {provenance.get('created', '')}",
    ]
    if provenance.get("fine_tuned_from"):
        parent = provenance["fine_tuned_from"]
        lines.append(f"* fine-tuned from `{parent.get('id')}` v{parent.get('version')} "
                     f"on {len(provenance.get('cases', {}).get('labeled', []))} labeled and "
                     f"{len(provenance.get('cases', {}).get('unlabeled', []))} unlabeled cases")
    lines += plan_lines(manifest.get("plan"))
    if provenance.get("data"):
        lines.append(f"* data: `{provenance['data']}`")
    lines.append(f"* iterations: {provenance.get('iteration', provenance.get('iterations'))} "
                 f"of {provenance.get('iterations')}, seed {provenance.get('seed')}")
    if provenance.get("best_metric") is not None:
        lines.append(f"* best validation mean Dice: {provenance['best_metric']:.4f} "
                     f"at iteration {provenance.get('best_iteration')}")
    if provenance.get("command"):
        lines += ["", "Reproduce:", "", f"    {provenance['command']}"]
    lines += ["", "Intended for research use; check every segmentation before clinical use.", ""]
    return "\n".join(lines)


def plan_lines(plan: dict[str, Any] | None) -> list[str]:
    """The model card's lines about the data plan (spacing, normalisation, post-processing)."""
    if not plan:
        return ["* data plan: none (runs on the input grid with per-image normalisation)"]
    spacing = " x ".join(f"{v:g}" for v in plan["target_spacing"])
    lines = [f"* data plan: works at {spacing} mm (z, y, x); inputs are resampled to it and results back"]
    for name, entry in plan.get("normalization", {}).items():
        if entry.get("scheme") == "ct":
            low, high = entry["clip"]
            lines.append(f"  * `{name}`: CT, clip [{low:g}, {high:g}] HU, z-score with training-set foreground "
                         f"mean {entry['mean']:g} / std {entry['std']:g} HU")
        else:
            lines.append(f"  * `{name}`: {entry.get('scheme', 'none').upper()}, per-image z-score over non-zero voxels"
                         if entry.get("scheme") == "mr" else f"  * `{name}`: no normalisation")
    chosen = plan.get("postprocessing", {}).get("largest_component", [])
    lines.append("* post-processing (chosen on validation): largest component of "
                 + (", ".join(chosen) if chosen else "no label"))
    return lines
