"""Gadolinium-enhanced cardiac MR with the left atrium labelled (kind ``atrium-mr``).

Like the 2018 Atrial Segmentation Challenge (LA) data used by DTC: one 3D
gadolinium-enhanced, fat-suppressed MR of the heart, cropped around the left atrium. The
atrium is a deformed body with four pulmonary-vein stubs (sometimes a common left trunk
or a right middle vein) and a finger-like appendage. Bright blood pools of similar
signal touch it: the left ventricle through the open mitral orifice (the label stops at
the mitral plane, which the image does not show), the pulmonary veins beyond the
labelled ostia, the right atrium across a 2 mm septum, the right pulmonary artery over
its roof, the aorta, so a threshold cannot separate it. The atrial wall shows patchy
late enhancement (fibrosis) brighter than blood.

* Labels: 0 background, 1 left atrium (body, appendage, proximal pulmonary veins).
* Default grid (z, y, x) = (80, 112, 112) at 1.0 mm isotropic (DTC's 112x112x80 patch).
* Signal in arbitrary positive units with a smooth bias field (and a coil profile
  brighter posteriorly) and Rician noise.
* ``appearance="shifted"``: another scanner: no fat suppression (fat as bright as blood),
  less blood-myocardium contrast, a stronger bias field, more noise and blur.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from MultiModalSegLib.phantoms.kind import PhantomKind
from MultiModalSegLib.phantoms.shapes import (
    attach_tissue_map,
    bias_field,
    case_generators,
    deformed_ellipsoid,
    grid_for,
    jitter,
    lps,
    normalized_radius,
    partial_volume_blur,
    random_field,
    random_rotation,
    rician_noise,
    rotation_matrix,
    smooth_curve,
    to_sitk_image,
    tube,
)

INFO = PhantomKind(
    name="atrium-mr",
    modalities=("mri",),
    reference_modality="mri",
    labels={"background": 0, "left_atrium": 1},
    default_shape=(80, 112, 112),
    default_spacing=(1.0, 1.0, 1.0),
    description=(
        "Gadolinium-enhanced cardiac MR with the left atrium (body, appendage, pulmonary "
        "vein ostia) labelled, touching other bright blood pools; bias field, Rician noise."
    ),
    label_colors={1: (255, 60, 60)},
)


class HeartTissue(IntEnum):
    """Codes of the atrium phantom's tissue map."""

    LUNG = 0
    FAT = 1
    MYOCARDIUM = 2
    ATRIAL_WALL = 3
    FIBROSIS = 4
    LA_BLOOD = 5
    PV_BLOOD = 6
    LV_BLOOD = 7
    RA_BLOOD = 8
    RV_BLOOD = 9
    AORTA = 10
    PULMONARY_ARTERY = 11
    ESOPHAGUS = 12
    BONE = 13
    CHEST_WALL = 14


H = HeartTissue
STANDARD_SIGNAL = {
    H.LUNG: 14, H.FAT: 55, H.MYOCARDIUM: 45, H.ATRIAL_WALL: 85, H.FIBROSIS: 195,
    H.LA_BLOOD: 165, H.PV_BLOOD: 168, H.LV_BLOOD: 158, H.RA_BLOOD: 150, H.RV_BLOOD: 145,
    H.AORTA: 175, H.PULMONARY_ARTERY: 155, H.ESOPHAGUS: 70, H.BONE: 75, H.CHEST_WALL: 60,
}


@dataclass(frozen=True)
class CardiacProtocol:
    """Signal table (overrides of STANDARD_SIGNAL) and image formation of one protocol."""

    overrides: dict[HeartTissue, float] = field(default_factory=dict)
    noise: float = 0.065  # Rician sigma as a fraction of the LA blood signal
    bias_strength: float = 0.25
    coil_gradient: float = 0.25  # signal gain from anterior to posterior edge of the field of view
    blur_sigma_voxels: float = 0.7
    texture: float = 0.05

    def signal(self) -> np.ndarray:
        return np.array([self.overrides.get(t, STANDARD_SIGNAL[t]) for t in HeartTissue], np.float32)


PROTOCOLS = {
    "standard": CardiacProtocol(),
    "shifted": CardiacProtocol(
        overrides={H.FAT: 150, H.MYOCARDIUM: 65, H.ATRIAL_WALL: 90, H.FIBROSIS: 160, H.LA_BLOOD: 140,
                   H.PV_BLOOD: 140, H.LV_BLOOD: 138, H.RA_BLOOD: 132, H.RV_BLOOD: 128, H.AORTA: 148,
                   H.PULMONARY_ARTERY: 135, H.LUNG: 20},
        noise=0.1,
        bias_strength=0.4,
        coil_gradient=0.45,
        blur_sigma_voxels=1.0,
        texture=0.07,
    ),
}


def _surface_distance(radii: np.ndarray, rotation: np.ndarray, direction: np.ndarray) -> float:
    """Distance from an ellipsoid's centre to its surface along a direction (array order)."""
    local = rotation.T @ direction
    return float(1.0 / np.sqrt(np.sum((local / radii) ** 2)))


def make(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    appearance: str = "standard",
    tissue_map: bool = False,
) -> dict:
    """Draw a left-atrium MR case (see the module docstring for what it contains).

    ``tissue_map``: also return the tissue map (``case["tissue"]``, names in meta).
    """
    rng, field_rng, noise_rng = case_generators(seed, 3)
    grid = grid_for(INFO.default_shape, INFO.default_spacing, shape, spacing, tuple(rng.uniform(-6, 6, 3)))
    sigma = lambda mm: tuple(mm / s for s in grid.spacing)
    big = random_field(field_rng, grid, 14.0)
    fine = random_field(field_rng, grid, 3.0)
    z, y, x = grid.coords()
    tissue = np.full(grid.shape, H.LUNG, np.uint8)
    label = np.zeros(grid.shape, bool)

    # Mediastinum (fat) between the lungs, spine and chest wall at the edges.
    mediastinum = ((x - 5.0) / 62.0) ** 2 + ((y + 5.0) / 80.0) ** 2 < 1.0 + 0.08 * big
    tissue[mediastinum] = H.FAT
    tissue[np.broadcast_to((x / 20.0) ** 2 + ((y - 72.0) / 18.0) ** 2 < 1.0, grid.shape)] = H.BONE
    tissue[y + 0.0 * z < -62.0 + 6.0 * big] = H.CHEST_WALL

    la_c = np.asarray(jitter(rng, lps(3, 12, 0), 4.0))
    la_scale = rng.uniform(0.85, 1.2)
    la_radii = np.array([20.0, 18.0, 27.0]) * la_scale * rng.uniform(0.9, 1.1, 3)
    la_rot = random_rotation(rng, 12.0)

    # Left ventricle (antero-left-inferior), its myocardium, right ventricle in front.
    lv_c = la_c + np.asarray(lps(30, -40, -30)) + rng.normal(0, 4.0, 3)
    lv_axis = (lv_c - la_c) / np.linalg.norm(lv_c - la_c)
    lv_rot = rotation_matrix((0, -35, 25))
    lv_radii = np.array([26.0, 30.0, 24.0]) * rng.uniform(0.9, 1.15)
    tissue[deformed_ellipsoid(grid, tuple(lv_c), tuple(lv_radii + 10.0), lv_rot)] = H.MYOCARDIUM
    tissue[deformed_ellipsoid(grid, tuple(lv_c), tuple(lv_radii), lv_rot, big, 0.05)] = H.LV_BLOOD
    rv_c = lv_c + np.asarray(lps(-32, -12, 4))
    tissue[deformed_ellipsoid(grid, tuple(rv_c), (24.0, 20.0, 26.0), lv_rot) & (tissue != H.LV_BLOOD)] = H.MYOCARDIUM
    tissue[deformed_ellipsoid(grid, tuple(rv_c), (20.0, 15.0, 21.0), lv_rot, big, 0.06) & (tissue != H.LV_BLOOD)] = H.RV_BLOOD

    # Right atrium with the caval veins, to the patient's right of the septum.
    ra_c = la_c + np.asarray(lps(-36, -14, -4)) + rng.normal(0, 3.0, 3)
    tissue[deformed_ellipsoid(grid, tuple(ra_c), (26.0, 22.0, 24.0), None, big, 0.08)] = H.RA_BLOOD
    tissue[tube(grid, np.array([ra_c, ra_c + np.asarray(lps(2, 4, 70))]), 10.0)] = H.RA_BLOOD
    tissue[tube(grid, np.array([ra_c, ra_c + np.asarray(lps(4, 8, -70))]), 12.0)] = H.RA_BLOOD

    # Great arteries: ascending aorta in front of the atrium, pulmonary trunk to its left
    # with the right pulmonary artery crossing over the atrial roof; descending aorta.
    aorta_root = la_c + np.asarray(lps(-6, -30, -8))
    tissue[tube(grid, smooth_curve(np.array([aorta_root, aorta_root + np.asarray(lps(-4, -4, 40)),
                                             aorta_root + np.asarray(lps(0, 10, 90))]), 2.0), 13.5)] = H.AORTA
    tissue[tube(grid, np.array([lps(22, 44, -80), lps(20, 42, 80)]) + rng.normal(0, 2.0, 3), 11.0)] = H.AORTA
    tissue[tube(grid, np.array([lps(5, 36, -80), lps(3, 36, 80)]), 7.5)] = H.ESOPHAGUS
    pa_root = la_c + np.asarray(lps(20, -38, 8))
    roof = la_c[0] + _surface_distance(la_radii, la_rot, np.array([1.0, 0.0, 0.0])) + 8.0
    tissue[tube(grid, smooth_curve(np.array([pa_root, pa_root + np.asarray(lps(2, 10, 18))]), 2.0), 13.0)] = H.PULMONARY_ARTERY
    rpa = [pa_root + np.asarray(lps(2, 10, 18)), (roof, la_c[1] - 2.0, la_c[2] + 5.0), (roof + 2.0, la_c[1] + 6.0, la_c[2] - 45.0),
           (roof + 6.0, la_c[1] + 12.0, la_c[2] - 80.0)]
    tissue[tube(grid, smooth_curve(np.asarray(rpa), 2.0), [10.0, 9.0, 8.0, 6.0])] = H.PULMONARY_ARTERY
    lpa = [pa_root + np.asarray(lps(2, 10, 18)), pa_root + np.asarray(lps(22, 40, 22)), pa_root + np.asarray(lps(45, 70, 14))]
    tissue[tube(grid, smooth_curve(np.asarray(lpa), 2.0), [10.0, 8.0, 6.0])] = H.PULMONARY_ARTERY

    # Left atrium: a 2 mm wall (with fibrosis patches), then blood; the wall survives only
    # where the atrium meets other structures (the septum, the roof under the RPA, ...).
    box, r = normalized_radius(grid, tuple(la_c), tuple(la_radii), la_rot, big, 0.1, reach=1.3)
    wall_r = 1.0 + 2.0 / float(la_radii.min())
    wall = np.zeros(grid.shape, bool)
    body = np.zeros(grid.shape, bool)
    wall[box] = r < wall_r
    body[box] = r < 1.0
    tissue[wall] = H.ATRIAL_WALL
    tissue[wall & (fine > 1.3)] = H.FIBROSIS
    tissue[body] = H.LA_BLOOD
    label |= body

    # Pulmonary veins: the labelled ostium (8-14 mm beyond the body), then unlabelled
    # veins branching into the lungs.
    veins = {
        "right superior": lps(-1.0, 0.35, 0.55), "right inferior": lps(-1.0, 0.55, -0.45),
        "left superior": lps(1.0, 0.4, 0.55), "left inferior": lps(1.0, 0.6, -0.45),
    }
    if rng.uniform() < 0.25:
        veins["right middle"] = lps(-1.0, 0.1, 0.0)
    common_left = rng.uniform() < 0.15
    if common_left:
        veins.pop("left superior")
        veins["left inferior"] = lps(1.0, 0.5, 0.0)
    for name, direction in veins.items():
        d = np.asarray(direction) + rng.normal(0, 0.12, 3)
        d /= np.linalg.norm(d)
        to_surface = _surface_distance(la_radii, la_rot, d)
        ostium_length = rng.uniform(8.0, 14.0)
        radius = (9.0 if common_left and name == "left inferior" else 6.5) * rng.uniform(0.85, 1.15)
        start = la_c + d * 0.5 * to_surface
        ostium = la_c + d * (to_surface + ostium_length)
        bend = np.asarray(lps(0, 8, 0))
        proximal = tube(grid, np.array([start, ostium]), radius)
        tissue[proximal] = H.LA_BLOOD
        label |= proximal
        for _ in range(2):
            tip = ostium + d * rng.uniform(25, 45) + bend + rng.normal(0, 10.0, 3)
            branch = tube(grid, smooth_curve(np.array([ostium, (ostium + tip) / 2 + rng.normal(0, 4.0, 3), tip]), 2.0),
                          [radius * 0.9, radius * 0.6, 2.0])
            branch &= ~label
            tissue[branch] = H.PV_BLOOD

    # Appendage: a curled, lobulated finger toward the pulmonary trunk.
    base = la_c + np.asarray(lps(0.7, -0.35, 0.35)) * _surface_distance(la_radii, la_rot, np.asarray(lps(0.7, -0.35, 0.35)) / np.linalg.norm(lps(0.7, -0.35, 0.35))) * 0.8
    appendage_path = [base, base + np.asarray(lps(14, -10, 6)), base + np.asarray(lps(22, -22, 0)) + rng.normal(0, 3, 3),
                      base + np.asarray(lps(20, -32, -8)) + rng.normal(0, 4, 3)]
    appendage = tube(grid, smooth_curve(np.asarray(appendage_path), 1.5), [9.0, 8.0, 6.0, 3.5]) & ((fine > -1.2) | (tissue == H.LA_BLOOD))
    tissue[appendage] = H.LA_BLOOD
    label |= appendage

    # Mitral orifice: blood continuous with the ventricle; the label stops at the plane.
    to_plane = _surface_distance(la_radii, la_rot, lv_axis)
    plane = la_c + lv_axis * to_plane
    orifice = tube(grid, np.array([la_c, lv_c]), 13.0) & ~np.isin(tissue, [H.RV_BLOOD, H.AORTA])
    tissue[orifice] = H.LV_BLOOD
    side = (z - plane[0]) * lv_axis[0] + (y - plane[1]) * lv_axis[1] + (x - plane[2]) * lv_axis[2]
    la_side = orifice & (side < 0)
    tissue[la_side | (label & (tissue == H.LV_BLOOD))] = H.LA_BLOOD
    label |= la_side
    label &= tissue == H.LA_BLOOD

    protocol = PROTOCOLS[appearance]
    signal = protocol.signal()
    volume = signal[tissue] * (1.0 + protocol.texture * random_field(field_rng, grid, 2.0))
    volume = partial_volume_blur(volume, protocol.blur_sigma_voxels)
    coil = 1.0 + protocol.coil_gradient * (y - float(grid.axis(1)[0])) / float(grid.shape[1] * grid.spacing[1])
    volume *= bias_field(noise_rng, grid.shape, sigma(70.0), protocol.bias_strength) * coil.astype(np.float32)
    volume = rician_noise(noise_rng, volume, protocol.noise * float(signal[H.LA_BLOOD]))
    case = {
        "images": {"mri": to_sitk_image(volume.astype(np.float32), grid)},
        "label": to_sitk_image(label.astype(np.uint8), grid),
        "meta": {"kind": INFO.name, "seed": int(seed), "appearance": appearance, "pulmonary_veins": sorted(veins)},
    }
    if tissue_map:
        attach_tissue_map(case, tissue, grid, [t.name.lower() for t in HeartTissue])
    return case
