"""Four-sequence brain MR with a glioma, BraTS style (kind ``brain-mr4``).

Anatomy: scalp (skin, fat), skull (tables and diploe), subarachnoid CSF, cortex with
sulci (the zero-crossings of a smooth random field cut sulcal sheets, lined by gray
matter), white matter, lateral/third/fourth ventricles, deep gray nuclei, choroid plexus,
interhemispheric fissure, cerebellum with folia, brainstem, orbits with eyes, ethmoid air,
dural sinuses, and a few periventricular / punctate white-matter hyperintensities (bright
on FLAIR like edema: a threshold on FLAIR must not find the tumour).

The tumour: an irregular enhancing rim around necrosis, or a solid enhancing mass, or a
non-enhancing (low-grade-like) mass, with finger-like edema that spreads in white matter,
and mass effect that pushes the surrounding anatomy away.

* Sequences (arbitrary positive units, background 0): ``t1`` (WM > GM > CSF, fat bright),
  ``t1ce`` (as T1 plus enhancement of the tumour rim, choroid plexus and dural sinuses),
  ``t2`` (CSF > edema > GM > WM), ``flair`` (CSF dark, edema bright). Each has its own
  smooth bias field and Rician noise; the air outside the head is set to 0.
* Labels (BraTS 2018-2020): 0 background, 1 necrotic / non-enhancing tumour core,
  2 peritumoral edema, 4 enhancing tumour.
* Default grid (z, y, x) = (96, 96, 96) at 2.2 mm isotropic (21 cm field of view).
* ``appearance="shifted"``: another scanner and protocol: lower T1 gray-white contrast,
  weaker gadolinium enhancement, incomplete FLAIR fluid suppression, other intensity
  scales, stronger bias field, twice the noise and more blur.
* ``skull_stripped=True`` zeroes everything outside the intracranial space, as BraTS does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy import ndimage

from MultiModalSegLib.phantoms.kind import PhantomKind
from MultiModalSegLib.phantoms.shapes import (
    attach_tissue_map,
    bias_field,
    case_generators,
    grid_for,
    partial_volume_blur,
    random_field,
    rician_noise,
    smooth_curve,
    to_sitk_image,
    tube,
)

INFO = PhantomKind(
    name="brain-mr4",
    modalities=("t1", "t1ce", "t2", "flair"),
    reference_modality="t1ce",
    labels={"background": 0, "necrotic_core": 1, "edema": 2, "enhancing_tumor": 4},
    default_shape=(96, 96, 96),
    default_spacing=(2.2, 2.2, 2.2),
    description=(
        "Brain MR (T1, T1ce, T2, FLAIR) with a glioma: necrotic core, enhancing rim and "
        "edema (BraTS labels 1, 2, 4), skull and scalp, bias field and Rician noise."
    ),
    label_colors={1: (255, 60, 60), 2: (60, 220, 60), 4: (255, 220, 30)},
)

TUMOR_TYPES = {"glioblastoma": 0.75, "solid_enhancing": 0.13, "non_enhancing": 0.12}


class BrainTissue(IntEnum):
    """Codes of the brain phantom's tissue map."""

    BACKGROUND = 0
    SKIN = 1
    FAT = 2
    BONE = 3
    MARROW = 4
    CSF = 5
    GM = 6
    WM = 7
    DEEP_GM = 8
    SINUS_BLOOD = 9
    CHOROID = 10
    WMH = 11
    EYE = 12
    AIR = 13
    MUSCLE = 14
    EDEMA = 15
    NECROSIS = 16
    ENHANCING = 17
    NON_ENHANCING = 18


B = BrainTissue
# Signal per tissue: (t1, t1ce, t2, flair); typical 1.5/3 T spin-echo / FLAIR relations.
STANDARD_SIGNAL: dict[BrainTissue, tuple[float, float, float, float]] = {
    B.BACKGROUND: (0, 0, 0, 0),
    B.SKIN: (70, 72, 60, 55),
    B.FAT: (190, 190, 130, 150),
    B.BONE: (8, 8, 6, 6),
    B.MARROW: (120, 125, 70, 95),
    B.CSF: (25, 25, 210, 12),
    B.GM: (75, 78, 88, 100),
    B.WM: (110, 112, 58, 75),
    B.DEEP_GM: (86, 89, 72, 90),
    B.SINUS_BLOOD: (50, 170, 25, 30),
    B.CHOROID: (70, 160, 90, 70),
    B.WMH: (95, 97, 118, 150),
    B.EYE: (22, 22, 215, 12),
    B.AIR: (5, 5, 5, 5),
    B.MUSCLE: (65, 68, 45, 55),
    B.EDEMA: (72, 74, 155, 170),
    B.NECROSIS: (38, 40, 185, 60),
    B.ENHANCING: (82, 185, 105, 125),
    B.NON_ENHANCING: (68, 70, 140, 150),
}


@dataclass(frozen=True)
class MRProtocol:
    """Signal table and image-formation parameters of one protocol.

    ``overrides`` replace rows of STANDARD_SIGNAL; ``gains`` scale each sequence;
    ``noise`` is the Rician sigma as a fraction of the WM signal of each sequence.
    """

    overrides: dict[BrainTissue, tuple[float, float, float, float]] = field(default_factory=dict)
    gains: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    noise: float = 0.035
    bias_strength: float = 0.12
    blur_sigma_voxels: float = 0.5
    texture: float = 0.035

    def signal(self) -> np.ndarray:
        """Per-tissue signal table, shape (tissues, 4 sequences)."""
        table = np.array([self.overrides.get(t, STANDARD_SIGNAL[t]) for t in BrainTissue], np.float32)
        return table * np.asarray(self.gains, np.float32)


PROTOCOLS = {
    "standard": MRProtocol(),
    "shifted": MRProtocol(
        overrides={
            B.GM: (84, 86, 92, 105),
            B.WM: (98, 100, 62, 80),
            B.DEEP_GM: (88, 90, 75, 92),
            B.CSF: (30, 30, 180, 28),
            B.ENHANCING: (84, 150, 110, 130),
            B.SINUS_BLOOD: (50, 140, 30, 35),
            B.CHOROID: (70, 135, 90, 75),
            B.EDEMA: (76, 78, 140, 150),
            B.NECROSIS: (42, 44, 165, 75),
            B.WMH: (92, 94, 110, 140),
        },
        gains=(0.6, 1.7, 2.4, 0.8),
        noise=0.07,
        bias_strength=0.28,
        blur_sigma_voxels=0.9,
        texture=0.05,
    ),
}


def _radius(coords, center, radii) -> np.ndarray:
    """Ellipsoidal radius (1 on the surface) of axis-aligned ellipsoid on coordinate arrays."""
    z, y, x = coords
    return np.sqrt(((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 + ((x - center[2]) / radii[2]) ** 2)


def _ray_depth(coords, center, r) -> np.ndarray:
    """Depth (mm) below the surface of a star-shaped region whose radius field is r."""
    z, y, x = coords
    rho = np.sqrt((z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2)
    return rho * (1.0 / np.maximum(r, 1e-3) - 1.0)


def _pick_tumor(rng, brain_center, brain_radii, forced: str | None):
    kind = forced or str(rng.choice(list(TUMOR_TYPES), p=np.array(list(TUMOR_TYPES.values()))))
    radius = rng.uniform(11.0, 24.0)
    for _ in range(100):
        side = rng.choice([-1.0, 1.0])
        center = (rng.uniform(-5, 45), rng.uniform(-50, 45), side * rng.uniform(18, 45))
        room = [max(r - radius - 12.0, 1.0) for r in brain_radii]
        if _radius(tuple(np.float32(c) for c in center), brain_center, room) < 1.0:
            break
    return kind, np.asarray(center), radius


def make(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    appearance: str = "standard",
    tumor_type: str | None = None,
    skull_stripped: bool = False,
    tissue_map: bool = False,
) -> dict:
    """Draw a BraTS-like brain case.

    ``tumor_type``: "glioblastoma" (necrosis + enhancing rim), "solid_enhancing" or
    "non_enhancing" (no label 4); default random (75 / 13 / 12 %).
    ``skull_stripped``: zero everything outside the intracranial space (BraTS style).
    ``tissue_map``: also return the tissue map (``case["tissue"]``, names in meta).
    """
    from MultiModalSegLib.errors import MultiModalSegError

    if tumor_type is not None and tumor_type not in TUMOR_TYPES:
        raise MultiModalSegError(f"Unknown tumor_type {tumor_type!r}; use one of {', '.join(TUMOR_TYPES)}.")
    rng, field_rng, noise_rng = case_generators(seed, 3)
    grid = grid_for(INFO.default_shape, INFO.default_spacing, shape, spacing, (0.0, rng.uniform(-4, 4), rng.uniform(-4, 4)))
    sigma = lambda mm: tuple(mm / s for s in grid.spacing)
    big = random_field(field_rng, grid, 25.0)
    mid = random_field(field_rng, grid, 10.0)
    fold = random_field(field_rng, grid, 6.0)
    fine = random_field(field_rng, grid, 3.0)
    z, y, x = grid.coords()
    coords = (z, y, x)

    scale = rng.uniform(0.92, 1.06)
    head_c = (6.0, 4.0, 0.0)
    head_radii = tuple(v * scale * rng.uniform(0.96, 1.04) for v in (86.0, 92.0, 72.0))
    head_r = _radius(coords, head_c, head_radii) / (1.0 + 0.015 * big)
    head_depth = _ray_depth(coords, head_c, head_r)
    brain_radii = tuple(r - 14.5 for r in head_radii)
    tumor_kind, tumor_c, tumor_radius = _pick_tumor(rng, head_c, brain_radii, tumor_type)

    # Mass effect: anatomy is drawn at warped coordinates, pushed radially away from the
    # tumour (a point at distance rho shows the anatomy from rho - m R exp(-(rho/2.5R)^2)).
    push = rng.uniform(0.3, 0.7) * tumor_radius
    dz, dy, dx = z - tumor_c[0], y - tumor_c[1], x - tumor_c[2]
    rho = np.sqrt(dz * dz + dy * dy + dx * dx) + 1e-3
    shrink = np.maximum(rho - push * np.exp(-((rho / (2.5 * tumor_radius)) ** 2)), 0.0) / rho
    warped = (tumor_c[0] + dz * shrink, tumor_c[1] + dy * shrink, tumor_c[2] + dx * shrink)
    wz, wy, wx = warped

    tissue = np.full(grid.shape, B.BACKGROUND, np.uint8)
    head = head_r < 1.0
    tissue[head] = B.SKIN
    tissue[head & (head_depth > 1.5)] = B.FAT
    tissue[head & (head_depth > 5.0 + 0.8 * mid)] = B.BONE
    tissue[head & (head_depth > 7.0 + 0.8 * mid) & (head_depth < 10.0)] = B.MARROW
    # The cranial cavity is closed below by the skull base: anterior fossa (orbital roofs),
    # deeper middle fossae on each side (temporal lobes), deepest posterior fossa.
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    post = sig((y - 6.0 - 0.4 * np.abs(x)) / 7.0)  # the petrous ridges run back and out
    middle = sig((np.abs(x) - 18.0) / 7.0) * sig((y + 22.0) / 8.0) * (1.0 - post)
    skull_base = -26.0 - 22.0 * middle - 50.0 * post
    stem = ((wx / 12.0) ** 2 + ((wy - 16.0) / 13.0) ** 2 < 1.0) & (wz < -12.0)
    inner = head & (head_depth > 12.0)
    intracranial = inner & ((z > skull_base) | stem)
    tissue[head & (head_depth > 5.0) & ~intracranial & (z < skull_base + 1.0)] = B.MUSCLE
    tissue[head & (head_depth > 5.0) & ~intracranial & (z < skull_base + 1.0) & (z > skull_base - 7.0)] = B.BONE
    tissue[intracranial] = B.CSF

    # Cerebrum above the skull base and the tentorium; cortex and sulci.
    tentorium = -24.0 - 0.25 * np.clip(wy - 10.0, 0.0, None)
    brain_depth = head_depth - 14.5 + 1.0 * mid
    above_base = (z > skull_base + 2.5) & ((post < 0.5) | (wz > tentorium))
    cerebrum = intracranial & (brain_depth > 0) & above_base
    sulcal_width = 0.07 + 0.06 * np.clip(1.0 - brain_depth / 24.0, 0, 1)
    sulcus = np.abs(fold) < sulcal_width
    cortex = (brain_depth < 3.5 + 0.8 * fine) | ((np.abs(fold) < 0.42) & (brain_depth < 26.0))
    tissue[cerebrum] = B.WM
    tissue[cerebrum & cortex] = B.GM
    tissue[cerebrum & sulcus & (brain_depth < 24.0)] = B.CSF
    fissure = cerebrum & (np.abs(wx - 1.5 * mid) < 1.6) & ((wz > 18.0) | (np.abs(wy) > 45.0))
    tissue[fissure] = B.CSF
    tissue[cerebrum & (np.abs(wx - 1.5 * mid) < 3.5) & ((wz > 18.0) | (np.abs(wy) > 45.0)) & ~fissure & (tissue == B.WM)] = B.GM

    # Posterior fossa: cerebellum (folia around a white core), brainstem, 4th ventricle.
    posterior = intracranial & ~cerebrum & (post > 0.5)
    cb_c = (-50.0, 48.0, 0.0)
    cb_r = _radius(warped, cb_c, (24.0 * scale, 30.0 * scale, 50.0 * scale))
    cerebellum = posterior & (brain_depth > 0.5) & (wz < tentorium - 2.0) & ~_near_stem(wx, wy, 3.0)
    tissue[cerebellum] = B.GM
    tissue[cerebellum & (np.abs(fine) < 0.14) & (cb_r > 0.5)] = B.CSF
    tissue[cerebellum & (cb_r < 0.42 + 0.1 * fold)] = B.WM
    tissue[intracranial & stem & (brain_depth > 0)] = B.WM
    tissue[intracranial & (_radius(warped, (-46.0, 33.0, 0.0), (7.0, 4.0, 6.0)) < 1.0)] = B.CSF

    # Orbits with eyes and ethmoid air in front of the skull base.
    for side in (-1.0, 1.0):
        eye_c = (-36.0, -head_radii[1] + 27.0, side * 31.0)
        orbit = head & ~intracranial & (_radius(coords, eye_c, (16.0, 20.0, 16.0)) < 1.0)
        tissue[orbit] = B.FAT
        tissue[orbit & (_radius(coords, eye_c, (11.0, 11.5, 11.0)) < 1.0)] = B.EYE
    tissue[head & ~intracranial & (_radius(coords, (-42.0, -head_radii[1] + 32.0, 0.0), (12.0, 16.0, 9.0)) < 1.0)] = B.AIR

    # Ventricles, deep gray nuclei, choroid plexus (in warped coordinates: mass effect).
    vent = rng.uniform(0.7, 1.4)
    for side in (-1.0, 1.0):
        bent = (wz - 0.0045 * wy * wy, wy, wx)
        tissue[cerebrum & (_radius(bent, (18.0, 0.0, side * (9.0 + 2.0 * vent)), (8.0 * vent, 36.0, 6.5 * vent)) < 1.0)] = B.CSF
        horns = [(14.0, 30.0, side * 16.0), (8.0, 52.0, side * 20.0)]
        temporal = [(12.0, 28.0, side * 19.0), (-10.0, 12.0, side * 30.0), (-22.0, -12.0, side * 31.0)]
        for path, radius in ((horns, 3.5 * vent), (temporal, 2.5 * vent)):
            curve = smooth_curve(np.asarray(path), 2.0)
            tissue[cerebrum & _tube_warped(warped, curve, radius)] = B.CSF
        tissue[cerebrum & (_radius(warped, (14.0, -12.0, side * 15.0), (10.0, 12.0, 6.0)) < 1.0)] = B.DEEP_GM
        tissue[cerebrum & (_radius(warped, (2.0, 8.0, side * 11.0), (10.0, 14.0, 8.0)) < 1.0)] = B.DEEP_GM
        tissue[cerebrum & (_radius(warped, (2.0, -2.0, side * 25.0), (12.0, 16.0, 6.0)) < 1.0)] = B.DEEP_GM
        tissue[cerebrum & (_radius(warped, (13.0, 30.0, side * 17.0), (4.0, 5.0, 4.0)) < 1.0)] = B.CHOROID
    tissue[cerebrum & (np.abs(wx) < 2.0 + 0.5 * vent) & (wy > -10) & (wy < 14) & (wz > -12) & (wz < 8)] = B.CSF

    # White-matter hyperintensities: periventricular caps and punctate foci.
    wm = tissue == B.WM
    if rng.uniform() < 0.7:
        for side in (-1.0, 1.0):
            for cap in ((18.0, -38.0, side * 12.0), (12.0, 42.0, side * 20.0)):
                tissue[wm & (_radius(warped, cap, (5.0, 7.0, 5.0)) < 1.0 + 0.3 * fine)] = B.WMH
    for _ in range(rng.integers(0, 10)):
        spot = (rng.uniform(0, 50), rng.uniform(-50, 50), rng.uniform(-45, 45))
        tissue[wm & (_radius(warped, spot, (3.0,) * 3) * rng.uniform(0.4, 1.3) < 1.0 + 0.3 * fine)] = B.WMH

    # Dural venous sinuses along the inner table: superior sagittal, transverse.
    angles = np.radians(np.linspace(25, 200, 24))
    ssp = np.stack([head_c[0] + (head_radii[0] - 13.0) * np.sin(angles),
                    head_c[1] - (head_radii[1] - 13.0) * np.cos(angles), np.zeros_like(angles)], 1)
    sinuses = tube(grid, ssp[ssp[:, 0] > -20.0], 3.2)
    for side in (-1.0, 1.0):
        sinuses |= tube(grid, smooth_curve(np.array([(-22.0, head_radii[1] - 14.0, 0.0), (-28.0, head_radii[1] - 24.0, side * 35.0),
                                                     (-34.0, 45.0, side * (head_radii[2] - 16.0))]), 2.0), 2.8)
    tissue[sinuses & intracranial] = B.SINUS_BLOOD

    # The tumour (unwarped coordinates): core, rim, necrosis, edema.
    label = np.zeros(grid.shape, np.uint8)
    brain_now = intracranial & np.isin(tissue, [B.WM, B.GM, B.DEEP_GM, B.WMH, B.CSF])
    tumor_radii = tumor_radius * rng.uniform(0.8, 1.2, 3)
    tumor_r = _radius(coords, tumor_c, tumor_radii) / (1.0 + 0.15 * np.clip(mid, -3, 3))
    core = intracranial & (tumor_r < 1.0) & (head_depth > 13.0)
    edema_c = tumor_c + rng.normal(0, 5.0, 3)
    edema_radii = (tumor_radius + rng.uniform(8.0, 26.0)) * rng.uniform(0.85, 1.15, 3)
    edema_r = _radius(coords, edema_c, edema_radii) / (1.0 + 0.3 * np.clip(0.6 * big + 0.8 * mid, -3, 3))
    spreads = np.isin(tissue, [B.WM, B.WMH, B.DEEP_GM]) | (tumor_r < 1.35)
    same_side = np.sign(wx) == np.sign(tumor_c[2])  # edema does not cross the falx
    edema = brain_now & (edema_r < 1.0) & spreads & ~core & same_side
    pieces, _ = ndimage.label(edema | core)
    edema &= np.isin(pieces, np.unique(pieces[core]))  # only edema connected to the tumour
    tissue[edema] = B.EDEMA
    label[edema] = 2
    # Edema fades into normal white matter toward its edge (the label still counts it).
    edema_strength = np.clip((1.0 - edema_r) / rng.uniform(0.2, 0.45), 0.35, 1.0).astype(np.float32)
    if tumor_kind == "non_enhancing":
        tissue[core] = B.NON_ENHANCING
        label[core] = 1
    else:
        tissue[core] = B.ENHANCING
        label[core] = 4
        if tumor_kind == "glioblastoma":
            necrosis = core & (tumor_r < rng.uniform(0.55, 0.85) * (1.0 + 0.12 * fine))
            tissue[necrosis] = B.NECROSIS
            label[necrosis] = 1

    protocol = PROTOCOLS[appearance]
    signal = protocol.signal()
    texture = random_field(field_rng, grid, 2.0)
    keep = intracranial if skull_stripped else head
    images = {}
    for i, name in enumerate(INFO.modalities):
        volume = signal[tissue, i]
        volume[edema] = signal[B.WM, i] + edema_strength[edema] * (signal[B.EDEMA, i] - signal[B.WM, i])
        volume = volume * (1.0 + protocol.texture * texture)
        volume = partial_volume_blur(volume, protocol.blur_sigma_voxels)
        volume *= bias_field(noise_rng, grid.shape, sigma(90.0), protocol.bias_strength)
        volume = rician_noise(noise_rng, volume, protocol.noise * float(signal[B.WM, i]))
        volume[~keep] = 0.0
        images[name] = to_sitk_image(volume.astype(np.float32), grid)
    case = {
        "images": images,
        "label": to_sitk_image(label, grid),
        "meta": {
            "kind": INFO.name,
            "seed": int(seed),
            "appearance": appearance,
            "tumor_type": tumor_kind,
            "tumor_center_mm": [float(c) for c in tumor_c],
            "tumor_radius_mm": float(tumor_radius),
        },
    }
    if tissue_map:
        attach_tissue_map(case, tissue, grid, [t.name.lower() for t in BrainTissue])
    return case


def _near_stem(wx: np.ndarray, wy: np.ndarray, margin: float) -> np.ndarray:
    """The brainstem's cross-section grown by ``margin`` mm (its surrounding cistern)."""
    return (wx / (12.0 + margin)) ** 2 + ((wy - 16.0) / (13.0 + margin)) ** 2 < 1.0


def _tube_warped(warped, curve: np.ndarray, radius: float) -> np.ndarray:
    """Voxels whose warped coordinates lie within ``radius`` of a polyline."""
    wz, wy, wx = warped
    best = np.full(np.broadcast(wz, wy, wx).shape, np.inf, np.float32)
    lo, hi = curve.min(0) - radius, curve.max(0) + radius
    near = (wz > lo[0]) & (wz < hi[0]) & (wy > lo[1]) & (wy < hi[1]) & (wx > lo[2]) & (wx < hi[2])
    if not near.any():
        return near
    pz, py, px = wz[near], wy[near], wx[near]
    d2 = np.full(pz.shape, np.inf, np.float32)
    for a, b in itertools.pairwise(curve):
        ab = b - a
        t = np.clip(((pz - a[0]) * ab[0] + (py - a[1]) * ab[1] + (px - a[2]) * ab[2]) / max(float(ab @ ab), 1e-9), 0, 1)
        d2 = np.minimum(d2, (pz - a[0] - t * ab[0]) ** 2 + (py - a[1] - t * ab[1]) ** 2 + (px - a[2] - t * ab[2]) ** 2)
    best[near] = d2
    return best < radius * radius
