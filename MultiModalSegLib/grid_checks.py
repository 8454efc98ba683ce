"""Warnings about an input's grid that ``predict`` cannot fix by resampling alone.

``predict`` resamples any input into its model's plan space, so a scan at another spacing is
not an error. Some inputs still deserve a word, because the result may be poor without any
visible failure; each becomes a ``warning`` event on the CLI and a line of ``result.json``:

* a modality whose spacing differs from the plan's target spacing by more than
  :data:`SPACING_RATIO_LIMIT` along an axis (thin details lost, or a coarse scan interpolated
  into detail it never had);
* a volume smaller than one patch in the plan's space (it is padded, and the network sees
  mostly padding);
* modalities that overlap the reference by less than :data:`OVERLAP_WARNING_FRACTION` of
  either one's extent (part of the volume lacks a modality; ``predict`` refuses less than
  10 %, see ``preprocessing.MINIMUM_OVERLAP_FRACTION``);
* a model package without a plan (made before plans existed), which runs on the input grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from MultiModalSegLib.data_plan import DataPlan

__all__ = ["OVERLAP_WARNING_FRACTION", "SPACING_RATIO_LIMIT", "input_grid_warnings"]

SPACING_RATIO_LIMIT = 3.0
OVERLAP_WARNING_FRACTION = 0.90


def _format(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


def input_grid_warnings(images: Mapping[str, sitk.Image], reference_name: str, plan: DataPlan | None,
                        network_shape: Sequence[int], patch_size: Sequence[int], model: str) -> list[str]:
    """The warnings (sentences) for these inputs; empty when nothing deserves one."""
    from MultiModalSegLib.preprocessing import overlap_fraction

    warnings: list[str] = []
    if plan is None:
        warnings.append(
            f"Model {model} has no data plan (it was made before plans existed), so it runs on the input grid as "
            "given; on scans whose spacing differs from its training data the result may be poor. Prefer a "
            "version trained or fine-tuned with this MultiModalSeg.")
    else:
        target = np.asarray(plan.target_spacing_xyz, dtype=float)
        for name, image in images.items():
            spacing = np.asarray(image.GetSpacing(), dtype=float)
            ratio = np.maximum(spacing / target, target / spacing)
            if np.any(ratio > SPACING_RATIO_LIMIT):
                axis = "xyz"[int(np.argmax(ratio))]
                warnings.append(
                    f"The '{name}' image's spacing ({_format(spacing)} mm, x y z) differs from the spacing model "
                    f"{model} was trained at ({_format(target)} mm) by {float(ratio.max()):.1f}x along {axis}; it is "
                    "resampled, but check the result closely.")
    if any(int(s) < int(p) for s, p in zip(network_shape, patch_size)):
        warnings.append(
            f"The volume is smaller than one patch of model {model} in its working space ({_format(network_shape)} "
            f"voxels vs a patch of {_format(patch_size)}, z y x); it is padded and the network sees mostly padding: "
            "give a larger field of view if you can.")
    reference = images[reference_name]
    for name, image in images.items():
        if name == reference_name:
            continue
        covered = min(overlap_fraction(image, reference), overlap_fraction(reference, image))
        if covered < OVERLAP_WARNING_FRACTION:
            warnings.append(
                f"The '{name}' image and the reference '{reference_name}' overlap by only {100 * covered:.0f} % of "
                f"their extent; where one is missing the model sees an empty modality, so check the result there.")
    return warnings
