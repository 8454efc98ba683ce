"""Network configurations of the bundled models, sized for a laptop CPU.

The papers' networks (nnU-Net-sized MAML branches, 9.4 M-parameter VNet) train for days
on a GPU; the bundled models must train and fine-tune on a CPU. These configurations keep
each architecture's structure and shrink its width and depth. Benchmarks and training
commands use the same functions, so the numbers in the README refer to the shipped sizes.
"""

from __future__ import annotations

from typing import Any


def maml_architecture(modalities: list[str], num_classes: int, base_filters: int = 8,
                      max_filters: int = 64) -> dict[str, Any]:
    """A 5-stage MAML with one in-plane-only first downsampling (for thick CT slices).

    Input divisor (z, y, x) = (8, 16, 16); patch (32, 64, 64) leaves a 4x4x4 bottleneck.
    1.9 M parameters (7.6 MB of float32 weights): one fine-tuning iteration (batch 2)
    takes about a second on a 2-core CPU.
    """
    return {"name": "MAML", "config": {
        "modalities": list(modalities), "num_classes": int(num_classes),
        "base_filters": base_filters, "max_filters": max_filters,
        "strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
        "deep_supervision": True, "ma_kernel": "reference", "absent_fill": "mean",
    }}


def liver_maml_architecture() -> dict[str, Any]:
    """``maml-liver-ct2``: arterial + venous CT, background / liver / tumor."""
    return maml_architecture(["arterial", "venous"], 3)


def isotropic_maml_architecture(modalities: list[str], num_classes: int, base_filters: int = 8,
                                max_filters: int = 64) -> dict[str, Any]:
    """A 5-stage MAML with isotropic downsampling (for near-isotropic MR, e.g. 2 mm brain).

    Input divisor (z, y, x) = (16, 16, 16); a 48^3 patch leaves a 3x3x3 bottleneck.
    Same widths as :func:`maml_architecture` (base 8, max 64), one U-Net branch per modality.
    """
    architecture = maml_architecture(modalities, num_classes, base_filters, max_filters)
    architecture["config"]["strides"] = [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    return architecture


def brain_tumor_maml_architecture() -> dict[str, Any]:
    """``maml-brain-mr4``: T1, T1ce, T2, FLAIR; background / necrotic core / edema / enhancing (BraTS 1, 2, 4)."""
    return isotropic_maml_architecture(["t1", "t1ce", "t2", "flair"], 4)


def brain_tissue_maml_architecture() -> dict[str, Any]:
    """``maml-brain-tissue-mr3``: T1, T2, PD; background / grey matter / white matter / CSF."""
    return isotropic_maml_architecture(["t1", "t2", "pd"], 4)
