"""Two-phase contrast CT of the upper abdomen with liver tumours (kind ``liver-ct2``).

The anatomy comes from abdomen.py (lung bases and heart down to the lower kidneys); this
file adds 1-3 liver lesions whose enhancement differs by phase, renders the late-arterial
and the portal-venous phase, and moves the arterial phase by a small translation
(breathing between the two breath-holds).

* Venous is the reference: the label follows the venous image. The arterial image is on
  the same grid, its anatomy shifted by 1-2 voxels in-plane and up to 1 voxel in z
  (recorded in ``meta["arterial_shift_voxels"]``, array order).
* Lesion types (HU arterial / venous, liver ~65 / ~105):
  ``hcc`` (~110 / ~80: arterial hyper-enhancement, venous wash-out, often an
  enhancing capsule in the venous phase), ``arterial_only`` (~115 / ~105: seen mainly in
  the arterial phase), ``venous_only`` (~64 / ~80: seen mainly in the venous phase),
  ``hypovascular`` (~45 / ~62: hypodense in both) and ``rim_enhancing`` (an enhancing
  rim ~115 / ~105 around a necrotic centre ~30 / ~35).
* Labels: 0 background, 1 liver (parenchyma with its intrahepatic vessels; not the IVC,
  not the gallbladder), 2 tumour.
* Default grid (z, y, x) = (48, 128, 128) at (5.0, 2.8, 2.8) mm: a 36 cm field of view, 24 cm
  cranio-caudal. ``appearance="shifted"``: early-arterial timing, a washed-out delayed
  venous phase, weaker lesion enhancement, more noise (20 vs 12 HU) and a smoother kernel.
"""

from __future__ import annotations

import edt
import numpy as np

from MultiModalSegLib.phantoms.abdomen import build_abdomen
from MultiModalSegLib.phantoms.ct_contrast import CONTRAST_TIMINGS, CTTissue, Tissue, render_ct_phase
from MultiModalSegLib.phantoms.kind import PhantomKind
from MultiModalSegLib.phantoms.shapes import (
    attach_tissue_map,
    case_generators,
    grid_for,
    normalized_radius,
    to_sitk_image,
)

INFO = PhantomKind(
    name="liver-ct2",
    modalities=("arterial", "venous"),
    reference_modality="venous",
    labels={"background": 0, "liver": 1, "tumor": 2},
    default_shape=(48, 128, 128),
    default_spacing=(5.0, 2.8, 2.8),
    description=(
        "Two-phase (late arterial, portal venous) abdominal CT in HU with liver and 1-3 "
        "liver tumours whose enhancement differs by phase; the arterial phase is shifted "
        "by 1-2 voxels; labels follow the venous phase."
    ),
    label_colors={1: (220, 140, 100), 2: (230, 50, 50)},
)

# name: (probability, [(compartment, outer r, unenhanced, arterial enh, venous enh, texture sd)])
# A compartment fills ``r < outer`` of the lesion's normalized radius; later ones paint over.
LESION_TYPES: dict[str, tuple[float, list[tuple[str, float, float, float, float, float]]]] = {
    "hcc": (0.3, [("core", 1.0, 42.0, 68.0, 38.0, 9.0)]),
    "arterial_only": (0.15, [("core", 1.0, 50.0, 65.0, 55.0, 5.0)]),
    "venous_only": (0.15, [("core", 1.0, 50.0, 14.0, 30.0, 5.0)]),
    "hypovascular": (0.25, [("core", 1.0, 38.0, 7.0, 24.0, 5.0)]),
    "rim_enhancing": (0.15, [("rim", 1.0, 45.0, 70.0, 60.0, 6.0), ("necrosis", 0.6, 25.0, 3.0, 8.0, 5.0)]),
}
HCC_CAPSULE = ("capsule", 1.0, 45.0, 20.0, 78.0, 4.0)


def _add_lesions(rng, abdomen, count: int, types: list[str] | None) -> tuple[np.ndarray, list[dict]]:
    """Place non-overlapping lesions inside the liver; returns the tumour mask and facts."""
    grid = abdomen.grid
    liver = abdomen.masks["liver_envelope"]
    tumour = np.zeros(grid.shape, bool)
    facts: list[dict] = []
    if count == 0 or not liver.any():
        return tumour, facts
    depth = edt.edt(liver, anisotropy=grid.spacing)
    names = list(LESION_TYPES)
    probabilities = np.array([LESION_TYPES[n][0] for n in names])
    min_radius = max(8.0, 1.6 * max(grid.spacing[1:]))
    deformation = abdomen.texture  # fine lobulation of the margin
    for i in range(count):
        kind = types[i % len(types)] if types else str(rng.choice(names, p=probabilities / probabilities.sum()))
        radius = rng.uniform(min_radius, max(min_radius + 1.0, 26.0))
        candidates = np.argwhere(depth > 0.55 * radius)
        if len(candidates) == 0:
            candidates = np.argwhere(depth >= depth.max() * 0.8)
        placed = False
        for _ in range(30):
            center = grid.point_of(tuple(candidates[rng.integers(len(candidates))]))
            if all(np.linalg.norm(np.subtract(center, f["center_mm"])) > radius + f["radius_mm"] + 4.0 for f in facts):
                placed = True
                break
        if not placed:
            continue
        radii = tuple(radius * rng.uniform(0.8, 1.2, 3))
        box, r = normalized_radius(grid, center, radii, None, deformation, 0.06)
        if box is None:
            continue
        compartments = list(LESION_TYPES[kind][1])
        if kind == "hcc" and rng.uniform() < 0.6:
            compartments = [HCC_CAPSULE, ("core", 1.0 - 2.5 / radius, *compartments[0][2:])]
        inside = liver[box] & (r < 1.0)
        for name, outer, unenhanced, arterial, venous, texture in compartments:
            code = abdomen.palette.add(CTTissue(f"{kind} {name}", unenhanced, arterial, venous, texture, "lesion"))
            abdomen.tissue[box][inside & (r < outer)] = code
        tumour[box] |= inside
        facts.append({"type": kind, "center_mm": [float(c) for c in center], "radius_mm": float(radius)})
    return tumour, facts


def make(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    appearance: str = "standard",
    lesions: int | None = None,
    lesion_types: list[str] | tuple[str, ...] | None = None,
    misregistration: bool = True,
    tissue_map: bool = False,
) -> dict:
    """Draw a two-phase liver CT case.

    ``lesions``: number of tumours (default random 1-3; 0 gives a tumour-free liver).
    ``lesion_types``: force the types, cycled over the lesions (see LESION_TYPES).
    ``misregistration``: shift the arterial phase by 1-2 voxels (default True).
    ``tissue_map``: also return the tissue map (``case["tissue"]``, names in meta).
    """
    from MultiModalSegLib.errors import MultiModalSegError

    unknown = sorted(set(lesion_types or ()) - set(LESION_TYPES))
    if unknown:
        raise MultiModalSegError(f"Unknown lesion type(s) {', '.join(unknown)}; use {', '.join(LESION_TYPES)}.")
    if lesions is not None and not 0 <= int(lesions) <= 6:
        raise MultiModalSegError(f"lesions must be between 0 and 6, got {lesions!r}.")
    rng, field_rng, noise_rng, lesion_rng = case_generators(seed, 4)
    center = (30.0 + rng.uniform(-12, 12), rng.uniform(-6, 6), rng.uniform(-8, 8))
    grid = grid_for(INFO.default_shape, INFO.default_spacing, shape, spacing, center)
    abdomen = build_abdomen(rng, grid, field_rng)
    count = int(lesion_rng.integers(1, 4)) if lesions is None else int(lesions)
    tumour, facts = _add_lesions(lesion_rng, abdomen, count, list(lesion_types) if lesion_types else None)

    liver_tissues = np.isin(abdomen.tissue, [Tissue.LIVER, Tissue.PORTAL_VEIN, Tissue.HEPATIC_VEIN, Tissue.ARTERY])
    label = np.zeros(grid.shape, np.uint8)
    label[abdomen.masks["liver_envelope"] & liver_tissues] = 1
    label[tumour] = 2

    shift = (0.0, 0.0, 0.0)
    if misregistration:
        angle = rng.uniform(0, 2 * np.pi)
        magnitude = rng.uniform(1.0, 2.0)
        shift = (float(rng.uniform(-1.0, 1.0)), float(magnitude * np.sin(angle)), float(magnitude * np.cos(angle)))
    timing = CONTRAST_TIMINGS[appearance]
    venous = render_ct_phase(noise_rng, abdomen.tissue, abdomen.palette, "venous", timing, abdomen.texture)
    arterial = render_ct_phase(noise_rng, abdomen.tissue, abdomen.palette, "arterial", timing, abdomen.texture, shift)
    case = {
        "images": {"arterial": to_sitk_image(arterial, grid), "venous": to_sitk_image(venous, grid)},
        "label": to_sitk_image(label, grid),
        "meta": {
            "kind": INFO.name,
            "seed": int(seed),
            "appearance": appearance,
            "lesions": facts,
            "arterial_shift_voxels": list(shift),
            "arterial_shift_mm": [s * sp for s, sp in zip(shift, grid.spacing)],
        },
    }
    if tissue_map:
        attach_tissue_map(case, abdomen.tissue, grid, [t.name for t in abdomen.palette.tissues])
    return case
