"""Post-processing of a label map: keep each label's largest connected component, where it helps.

A network sometimes adds small islands away from the organ (a vessel that looks like tumour, a
bright spot outside the atrium). Keeping only the largest 26-connected component of a label
removes them, but it also removes real second lesions, so it is not always right. nnU-Net
decides it per label on the validation cases after training, and so does MultiModalSeg
(:func:`choose_largest_component`): a label gets it when it raises that label's mean Dice over the
validation cases. The decision is stored in the model's plan (``postprocessing``) and ``predict``
applies it by default. The DTC paper's numbers include this post-processing for the left atrium.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["choose_largest_component", "keep_largest_component"]


def keep_largest_component(class_indices: np.ndarray, classes: int | Iterable[int]) -> np.ndarray:
    """Keep, for each class in ``classes``, only its largest 26-connected component; other voxels become 0.

    ``classes`` is the class indices to clean, or an int ``K`` meaning classes ``1..K``.
    Returns a new array; classes not listed are untouched.
    """
    from scipy import ndimage

    selected = range(1, classes + 1) if isinstance(classes, int) else classes
    result = class_indices.copy()
    structure = np.ones((3, 3, 3), dtype=bool)
    for cls in selected:
        mask = class_indices == cls
        components, count = ndimage.label(mask, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[mask & (components != int(np.argmax(sizes)))] = 0
    return result


def choose_largest_component(predictions: Sequence[np.ndarray], references: Sequence[np.ndarray],
                             label_names: Sequence[str]) -> dict[str, Any]:
    """Which labels should keep only their largest component, decided on validation cases.

    ``predictions`` and ``references`` are class-index maps (``1..K`` = ``label_names``) of the
    same cases. For each class the mean Dice over the cases where the reference or the
    prediction holds it is computed with and without the post-processing of that class alone;
    it is chosen when it raises the mean. Returns ``{"largest_component": [chosen names],
    "evidence": {name: {"dice_without", "dice_with", "cases"}}}``.
    """
    from MultiModalSegLib.metrics import dice

    chosen: list[str] = []
    evidence: dict[str, Any] = {}
    for index, name in enumerate(label_names, start=1):
        without, with_it = [], []
        for prediction, reference in zip(predictions, references):
            truth = reference == index
            predicted = prediction == index
            if not truth.any() and not predicted.any():
                continue
            without.append(float(dice(predicted, truth)))
            with_it.append(float(dice(keep_largest_component(prediction, [index]) == index, truth)))
        if not without:
            continue
        mean_without, mean_with = float(np.mean(without)), float(np.mean(with_it))
        evidence[name] = {"dice_without": round(mean_without, 4), "dice_with": round(mean_with, 4),
                          "cases": len(without)}
        if mean_with > mean_without:
            chosen.append(name)
    return {"largest_component": chosen, "evidence": evidence}
