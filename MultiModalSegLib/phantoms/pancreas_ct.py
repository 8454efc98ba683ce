"""Portal-venous CT of the upper abdomen with the pancreas labelled (kind ``pancreas-ct``).

Like the NIH Pancreas-CT collection used by DTC: a single contrast phase, the pancreas a
lobulated, elongated soft-tissue organ (head in the duodenal C-loop, body across the
aorta and SMA, tail toward the splenic hilum) with the splenic vein along its back, among
duodenum, jejunal loops, stomach and vessels of similar attenuation (pancreas ~100 HU,
bowel wall ~90 HU, liver ~105 HU). The anatomy is shared with ``liver-ct2`` (abdomen.py).

* Labels: 0 background, 1 pancreas.
* Default grid (z, y, x) = (64, 128, 128) at (2.5, 2.4, 2.4) mm: a 31 cm field of view, 16 cm cranio-caudal, centred on the pancreas (anisotropic: thin
  in-plane pixels, thicker slices).
* ``appearance="shifted"``: a pancreatic (late arterial) phase instead of the venous one
  (pancreas ~120 HU, brighter than the liver), more noise (18 vs 12 HU), a smoother kernel.
"""

from __future__ import annotations

import numpy as np

from MultiModalSegLib.phantoms.abdomen import build_abdomen
from MultiModalSegLib.phantoms.ct_contrast import CONTRAST_TIMINGS, ContrastTiming, Tissue, render_ct_phase
from MultiModalSegLib.phantoms.kind import PhantomKind
from MultiModalSegLib.phantoms.shapes import attach_tissue_map, case_generators, grid_for, to_sitk_image

INFO = PhantomKind(
    name="pancreas-ct",
    modalities=("ct",),
    reference_modality="ct",
    labels={"background": 0, "pancreas": 1},
    default_shape=(64, 128, 128),
    default_spacing=(2.5, 2.4, 2.4),
    description=(
        "Portal-venous abdominal CT in HU with the pancreas labelled, among duodenum, "
        "bowel loops and vessels of similar attenuation; anisotropic spacing."
    ),
    label_colors={1: (80, 220, 80)},
)

# The phase and timing each appearance is acquired with.
ACQUISITIONS: dict[str, tuple[str, ContrastTiming]] = {
    "standard": ("venous", CONTRAST_TIMINGS["standard"]),
    "shifted": (
        "arterial",
        ContrastTiming("pancreatic phase", noise_hu=18.0, blur_fwhm_voxels=(1.3, 1.7, 1.7), noise_grain_voxels=(0.3, 0.9, 0.9)),
    ),
}


def make(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    appearance: str = "standard",
    tissue_map: bool = False,
) -> dict:
    """Draw a pancreas CT case (see the module docstring for what it contains).

    ``tissue_map``: also return the tissue map (``case["tissue"]``, names in meta).
    """
    rng, field_rng, noise_rng = case_generators(seed, 3)
    center = (5.0 + rng.uniform(-8, 8), rng.uniform(-10, 5), rng.uniform(-6, 10))
    grid = grid_for(INFO.default_shape, INFO.default_spacing, shape, spacing, center)
    abdomen = build_abdomen(rng, grid, field_rng)
    label = (abdomen.tissue == Tissue.PANCREAS).astype(np.uint8)
    phase, timing = ACQUISITIONS[appearance]
    ct = render_ct_phase(noise_rng, abdomen.tissue, abdomen.palette, phase, timing, abdomen.texture)
    case = {
        "images": {"ct": to_sitk_image(ct, grid)},
        "label": to_sitk_image(label, grid),
        "meta": {"kind": INFO.name, "seed": int(seed), "appearance": appearance, "phase": phase},
    }
    if tissue_map:
        attach_tissue_map(case, abdomen.tissue, grid, [t.name for t in abdomen.palette.tissues])
    return case
