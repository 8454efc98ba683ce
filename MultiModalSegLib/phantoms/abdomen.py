"""The shared abdominal anatomy of the CT phantoms, drawn as a tissue map.

One patient per seed: body outline (subcutaneous fat, muscle wall, ribs, table), spine
with discs, canal and posterior elements, paraspinal and psoas muscles, lung bases and
the heart above a domed diaphragm, liver (two lobes, hepatic and portal veins inside),
gallbladder, spleen, kidneys (cortex, medulla, sinus), stomach with an air-fluid level,
duodenal C-loop, pancreas, small bowel loops, colon with stool and gas, aorta with its
visceral branches, IVC, portal/splenic/mesenteric and renal veins.

Positions are in the phantom frame (LPS, mm; see shapes.py) with the origin on the
midline at the level of the pancreas (about L1). The liver and pancreas phantoms choose
their field of view by the grid's ``center``; organ sizes and positions, fat thickness and
body size vary with the seed. The result is a map of :class:`Tissue` codes (uint8);
ct_contrast.py turns it into HU per phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from MultiModalSegLib.phantoms.ct_contrast import Tissue, TissuePalette
from MultiModalSegLib.phantoms.shapes import (
    Grid,
    deformed_ellipsoid,
    jitter,
    lps,
    normalized_radius,
    random_field,
    rotation_matrix,
    smooth_curve,
    tube,
)


@dataclass
class Abdomen:
    """A drawn abdomen: the tissue map, its palette, organ masks and landmarks."""

    grid: Grid
    tissue: np.ndarray
    palette: TissuePalette
    texture: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def paint(self, mask: np.ndarray, code: int) -> None:
        """Set ``mask`` to tissue ``code`` (later paint wins, like overlapping organs)."""
        self.tissue[mask] = code


def _vessel(abdomen: Abdomen, rng: np.random.Generator, control: list, radii: list, code: int,
            wiggle_mm: float = 2.0, clip: np.ndarray | None = None) -> np.ndarray:
    """Paint a smooth, slightly tortuous vessel through control points (array order)."""
    pts = np.asarray([jitter(rng, p, wiggle_mm) for p in control])
    pts[0] = control[0]  # keep the origin on the parent vessel
    curve = smooth_curve(pts, step_mm=max(2.0, min(abdomen.grid.spacing)))
    r = np.interp(np.linspace(0, 1, len(curve)), np.linspace(0, 1, len(radii)), radii)
    mask = tube(abdomen.grid, curve, r)
    if clip is not None:
        mask &= clip
    abdomen.paint(mask, code)
    return mask


def _solid_part(mask: np.ndarray, grid: Grid, opening_mm: float) -> np.ndarray:
    """The largest connected piece of ``mask`` after an in-plane opening: an organ that
    fills the space between others must not creep into thin gaps."""
    iterations = int(opening_mm / 2.0 / min(grid.spacing[1:]))
    cross = ndimage.generate_binary_structure(3, 1)
    cross[0] = cross[2] = False
    opened = ndimage.binary_opening(mask, cross, iterations=iterations) if iterations else mask
    pieces, count = ndimage.label(opened)
    if count <= 1:
        return opened
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    return pieces == int(np.argmax(sizes))


def build_abdomen(rng: np.random.Generator, grid: Grid, field_rng: np.random.Generator) -> Abdomen:
    """Draw one patient's abdomen on ``grid``: anatomy from ``rng``, the smooth random
    fields (textures, deformations) from ``field_rng``."""
    shape = grid.shape
    z, y, x = grid.coords()
    abdomen = Abdomen(
        grid=grid,
        tissue=np.full(shape, Tissue.AIR, np.uint8),
        palette=TissuePalette(),
        texture=random_field(field_rng, grid, 2.5),
    )
    big = random_field(field_rng, grid, 30.0)
    mid = random_field(field_rng, grid, 9.0)
    fine = random_field(field_rng, grid, 4.5)
    T = Tissue

    # ---- patient habitus
    half_lr = 150.0 * rng.uniform(0.88, 1.06)
    half_ap = 108.0 * rng.uniform(0.88, 1.06)
    fat_mm = rng.uniform(12.0, 32.0)
    wall_mm = rng.uniform(9.0, 14.0)
    spine_y = 0.46 * half_ap
    organ_scale = rng.uniform(0.9, 1.1)

    # ---- body outline: a superellipse, flatter on the posterior side (lying on the table)
    yb = y - 0.0
    power = np.where(yb > 0, 2.6, 2.0).astype(np.float32)
    rb = (np.abs(x / half_lr) ** power + np.abs(yb / half_ap) ** power) ** (1.0 / power)
    rb = rb / (1.0 + 0.025 * big)
    rho = np.sqrt(x * x + yb * yb)
    depth = np.where(rb > 1e-3, rho / np.maximum(rb, 1e-3), min(half_lr, half_ap)) * (1.0 - rb)
    fat_depth = fat_mm * (1.0 + 0.25 * big)
    body = rb < 1.0
    table_top = half_ap + 7.0 - 0.0012 * x * x
    abdomen.paint((y > table_top) & (y < table_top + 7.0) & (np.abs(x) < 190) & ~body, T.TABLE)
    abdomen.paint(body, T.FAT)
    wall = body & (depth > fat_depth) & (depth <= fat_depth + wall_mm)
    cavity = body & (depth > fat_depth + wall_mm)
    abdomen.paint(wall, T.MUSCLE)
    abdomen.masks["body"] = body
    abdomen.masks["cavity"] = cavity

    # ---- diaphragm dome, lungs, heart
    dome_right = 100.0 + rng.uniform(-12, 12)
    dome_left = dome_right - rng.uniform(5, 18)
    diaphragm_z = np.maximum(
        dome_right - ((x + 55.0) ** 2 + (y + 5.0) ** 2) / 130.0,
        dome_left - ((x - 60.0) ** 2 + (y + 5.0) ** 2) / 130.0,
    )
    above = cavity & (z > diaphragm_z)
    abdomen.paint(above, T.LUNG)
    heart_c = jitter(rng, lps(25, -30, dome_right + 48), 6.0)
    box, r = normalized_radius(grid, heart_c, (52, 55, 68), rotation_matrix((20, 0, 10)), big, 0.04, reach=1.15)
    if box is not None:
        region = above[box]
        sub = abdomen.tissue[box]
        sub[region & (r < 1.15)] = T.FAT
        sub[region & (r < 1.0)] = T.MYOCARDIUM
        sub[region & (r < 0.78)] = T.HEART_BLOOD
    below = cavity & (z <= diaphragm_z - 4.0)
    abdomen.paint(cavity & (z <= diaphragm_z) & (z > diaphragm_z - 4.0), T.MUSCLE)
    abdomen.masks["below_diaphragm"] = below

    # ---- colon frame: ascending, transverse, descending; stool and gas inside
    colon_pts = [
        lps(-92, 5, -160), lps(-95, 0, -60), lps(-85, -25, -5), lps(-40, -65, -20),
        lps(10, -72, -25), lps(60, -55, 0), lps(92, -20, 25), lps(100, 15, -30), lps(95, 20, -160),
    ]
    colon_pts = [jitter(rng, p, 6.0) for p in colon_pts]
    curve = smooth_curve(np.asarray(colon_pts), 3.0)
    colon_r = rng.uniform(17, 24)
    colon_outer = tube(grid, curve, colon_r) & below
    colon_lumen = tube(grid, curve, colon_r - 3.0) & below
    abdomen.paint(colon_outer, T.GI_WALL)
    abdomen.paint(colon_lumen, T.STOOL)
    abdomen.paint(colon_lumen & (mid < -0.2), T.GAS)

    # ---- stomach with an air-fluid level (the patient is supine: air is anterior)
    stomach_c = jitter(rng, lps(58, -28, 62), 6.0)
    antrum = [stomach_c, lps(15, -55, 35), lps(-15, -45, 25)]
    abdomen.paint(tube(grid, smooth_curve(np.asarray(antrum), 3.0), [22, 16, 13]) & below, T.GI_WALL)
    abdomen.paint(tube(grid, smooth_curve(np.asarray(antrum), 3.0), [17, 11, 8]) & below, T.GI_FLUID)
    stomach_radii = tuple(v * organ_scale for v in (55, 42, 40))
    box, r = normalized_radius(grid, stomach_c, stomach_radii, rotation_matrix((-25, 0, 15)), big, 0.08)
    if box is not None:
        sub, inside = abdomen.tissue[box], below[box] & (r < 1.0)
        sub[inside] = T.GI_WALL
        lumen = inside & (r < 1.0 - 5.0 / min(stomach_radii))
        _, yy, _ = grid.coords(box)
        level = stomach_c[1] - rng.uniform(0, 20)
        sub[lumen & (yy >= level)] = T.GI_FLUID
        sub[lumen & (yy < level)] = T.GAS
    esophagus = [lps(8, spine_y - 25, 200), lps(15, spine_y - 30, 95), stomach_c]
    abdomen.paint(tube(grid, smooth_curve(np.asarray(esophagus), 3.0), 8.0) & cavity, T.GI_WALL)

    # ---- duodenal C-loop around the pancreatic head
    duodenum = [lps(-15, -45, 25), lps(-45, -30, 20), lps(-58, -10, 0), lps(-52, 2, -30),
                lps(-15, 10, -48), lps(15, 5, -45), lps(28, -5, -25)]
    duodenum = smooth_curve(np.asarray([jitter(rng, p, 4.0) for p in duodenum]), 3.0)
    abdomen.paint(tube(grid, duodenum, 13.0) & below, T.GI_WALL)
    abdomen.paint(tube(grid, duodenum, 9.0) & below, T.GI_FLUID)

    # ---- spleen along the left posterolateral wall
    spleen_c = jitter(rng, lps(92, 42, 62), 6.0)
    spleen = deformed_ellipsoid(grid, spleen_c, tuple(v * organ_scale for v in (52, 58, 26)),
                                rotation_matrix((-38, 0, 0)), big, 0.12) & below
    abdomen.paint(spleen, T.SPLEEN)
    abdomen.masks["spleen"] = spleen

    # ---- kidneys: cortex, medullary pyramids, sinus fat
    for side, zc in ((-1, -28.0), (1, -15.0)):
        kc = jitter(rng, lps(side * 74, spine_y + 8, zc), 5.0)
        rot = rotation_matrix((side * 28, side * 12, 0))
        radii = tuple(v * organ_scale for v in (55, 27, 25))
        box, r = normalized_radius(grid, kc, radii, rot, mid, 0.03)
        if box is None:
            continue
        sub, ok = abdomen.tissue[box], below[box]
        sub[ok & (r < 1.0)] = T.KIDNEY_CORTEX
        sub[ok & (r < 0.72) & (fine[box] > -0.4)] = T.KIDNEY_MEDULLA
        sinus_c = (kc[0], kc[1] - 6.0, kc[2] - side * 12.0)
        sbox, sr = normalized_radius(grid, sinus_c, (30, 10, 9), rot)
        if sbox is not None:
            abdomen.tissue[sbox][below[sbox] & (sr < 1.0)] = T.RENAL_SINUS
        abdomen.landmarks["kidney_left" if side > 0 else "kidney_right"] = kc

    # ---- pancreas: head in the duodenal C, neck, body over the aorta, tail to the spleen
    pancreas_pts = [lps(-28, 6, -22), lps(-36, -8, -6), lps(-12, -20, 3), lps(20, -12, 8),
                    lps(50, 4, 16), lps(76, 24, 24)]
    pancreas_pts = [jitter(rng, p, 4.0) for p in pancreas_pts]
    pancreas_r = np.array([12.0, 20.0, 12.5, 14.0, 12.5, 10.5]) * rng.uniform(0.85, 1.15)
    curve = smooth_curve(np.asarray(pancreas_pts), 2.0)
    radius_along = np.interp(np.linspace(0, 1, len(curve)), np.linspace(0, 1, len(pancreas_r)), pancreas_r)
    pancreas_outer = tube(grid, curve, radius_along * 1.1)
    pancreas_core = tube(grid, curve, radius_along * 0.7)
    pancreas = pancreas_outer & (pancreas_core | (fine < 1.0)) & below
    abdomen.paint(pancreas, T.PANCREAS)
    abdomen.landmarks["pancreas_head"] = pancreas_pts[1]

    # ---- liver: fills the right upper quadrant under the diaphragm, down to an undulating
    # inferior surface (lowest at the right lobe's tip), and crosses the midline anteriorly
    # as the left lobe; it wraps around the organs drawn before it.
    liver_scale = organ_scale * rng.uniform(0.9, 1.12)
    edge_x = np.array([-160.0, -60.0, -20.0, 20.0, 60.0, 110.0])
    edge_z = np.array([-45.0, -22.0, 15.0, 38.0, 60.0, 100.0]) + rng.normal(0.0, 6.0, 6)
    edge_z = dome_right - (dome_right - edge_z) * liver_scale
    inferior_z = np.interp(x, edge_x, edge_z) - 0.12 * y + 14.0 * big + 4.0 * mid
    left_tip = 70.0 * liver_scale + rng.uniform(-10, 10)
    liver = below & (depth > fat_depth + wall_mm + 1.0) & (z > inferior_z) & (x < left_tip)
    liver &= (y < 40.0 - 0.9 * x + 6.0 * mid) | (x < 0)
    liver &= (x / 32.0) ** 2 + ((y - spine_y) / 36.0) ** 2 > 1.0  # the spine and aorta stay outside
    organs = [T.GI_WALL, T.GI_FLUID, T.GAS, T.STOOL, T.SPLEEN, T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA,
              T.RENAL_SINUS, T.PANCREAS]
    liver &= ~np.isin(abdomen.tissue, organs)
    liver = _solid_part(liver, grid, opening_mm=8.0)
    abdomen.paint(liver, T.LIVER)

    gb_c = jitter(rng, lps(-35, -48, 2), 5.0)
    gallbladder = deformed_ellipsoid(grid, gb_c, (34, 16, 15), rotation_matrix((0, 0, 35)), mid, 0.06) & below
    if rng.uniform() < 0.85:
        abdomen.paint(gallbladder, T.GALLBLADDER)
    else:  # contracted gallbladder (after a meal): a thick wall, barely any bile
        abdomen.paint(gallbladder, T.GI_WALL)
    liver &= ~gallbladder
    abdomen.masks["liver_envelope"] = liver

    # ---- small bowel loops in the fat left over in the lower, anterior abdomen
    loops_region = below & (z < 10.0 + 25.0 * big) & (y < 35.0 + 10 * big)
    loops_region &= abdomen.tissue == T.FAT
    loop_field = mid
    lumen = loops_region & (loop_field > 0.55)
    abdomen.paint(loops_region & (loop_field > 0.15), T.GI_WALL)
    abdomen.paint(lumen, T.GI_FLUID)
    abdomen.paint(lumen & (fine > 1.3) & (y < 0), T.GAS)

    # ---- vessels
    aorta_x, aorta_y = 14.0 + rng.uniform(-5, 5), spine_y - 27.0
    aorta = [lps(aorta_x + 6, aorta_y + 6, 260), lps(aorta_x + 3, aorta_y + 3, 100),
             lps(aorta_x, aorta_y, 0), lps(aorta_x - 2, aorta_y - 2, -200)]
    aorta_r = rng.uniform(10.5, 13.5)
    _vessel(abdomen, rng, aorta, [aorta_r], T.AORTA, wiggle_mm=1.0)
    ivc = [lps(-24, spine_y - 24, -200), lps(-22, spine_y - 28, 0), lps(-16, spine_y - 36, 70),
           lps(-8, spine_y - 45, 140)]
    _vessel(abdomen, rng, ivc, [11.0, 11.0, 12.0, 12.0], T.IVC, wiggle_mm=1.5)
    celiac = lps(aorta_x, aorta_y - aorta_r, 24)
    _vessel(abdomen, rng, [celiac, lps(aorta_x, aorta_y - 30, 28), lps(-25, -15, 28), lps(-42, -5, 36)],
            [3.5, 3.0, 2.5, 2.0], T.ARTERY)
    _vessel(abdomen, rng, [lps(aorta_x, aorta_y - 30, 28), lps(45, 0, 35), lps(70, 10, 30), lps(85, 25, 40)],
            [3.0, 3.0, 2.5], T.ARTERY, wiggle_mm=5.0)
    sma_origin = lps(aorta_x, aorta_y - aorta_r, 8)
    _vessel(abdomen, rng, [sma_origin, lps(aorta_x - 2, aorta_y - 30, 0), lps(aorta_x - 4, -20, -40),
                           lps(aorta_x - 6, -25, -200)], [4.5, 4.0, 3.5, 3.0], T.ARTERY)
    for side in (-1, 1):
        kidney = abdomen.landmarks.get("kidney_left" if side > 0 else "kidney_right")
        if kidney is None:
            continue
        hilum = (kidney[0], kidney[1] - 8.0, kidney[2] - side * 20.0)
        _vessel(abdomen, rng, [lps(aorta_x, aorta_y, kidney[0] + 12), hilum], [3.0, 2.5], T.ARTERY)
        if side > 0:  # the left renal vein crosses between the aorta and the SMA
            path = [hilum, lps(aorta_x, aorta_y - aorta_r - 5, kidney[0] + 6), lps(-22, spine_y - 28, kidney[0] + 8)]
        else:
            path = [hilum, lps(-22, spine_y - 28, kidney[0] + 4)]
        _vessel(abdomen, rng, path, [5.0, 4.5, 6.0][: len(path)], T.RENAL_VEIN)

    confluence = jitter(rng, lps(-8, -2, 2), 3.0)
    porta = jitter(rng, lps(-42, -4, 38), 4.0)
    abdomen.landmarks["porta_hepatis"] = porta
    _vessel(abdomen, rng, [confluence, lps(-28, -4, 22), porta], [7.0, 7.0, 6.5], T.PORTAL_VEIN)
    _vessel(abdomen, rng, [confluence, lps(-10, -14, -35), lps(-12, -22, -200)], [5.5, 5.0, 4.0], T.PORTAL_VEIN)
    _vessel(abdomen, rng, [confluence, lps(25, 6, 6), lps(55, 18, 15), lps(82, 30, 28)], [5.0, 5.0, 4.5, 4.0],
            T.PORTAL_VEIN, wiggle_mm=3.0)
    liver_ok = liver | (abdomen.tissue == T.PORTAL_VEIN)
    intrahepatic = [
        ([porta, lps(-75, 0, 44), lps(-98, -32, 52)], [5.0, 3.5, 2.0]),
        ([lps(-75, 0, 44), lps(-100, 28, 44)], [4.0, 2.0]),
        ([porta, lps(-15, -28, 50), lps(22, -52, 62)], [4.5, 3.0, 2.0]),
    ]
    hv_root = lps(-14, spine_y - 40, dome_right - 8)
    hepatic = [
        ([hv_root, lps(-60, 8, 70), lps(-98, 18, 45)], [6.0, 4.0, 2.0]),
        ([hv_root, lps(-30, -25, 65), lps(-45, -55, 35)], [5.5, 3.5, 2.0]),
        ([hv_root, lps(0, -25, 78), lps(20, -50, 70)], [5.0, 3.0, 1.8]),
    ]
    for control, radii in intrahepatic:
        _vessel(abdomen, rng, control, radii, T.PORTAL_VEIN, wiggle_mm=5.0, clip=liver_ok)
    for control, radii in hepatic:
        _vessel(abdomen, rng, control, radii, T.HEPATIC_VEIN, wiggle_mm=5.0, clip=liver | (z > hv_root[0] - 10))
    # peripheral branches: short random twigs inside the liver
    for _ in range(rng.integers(5, 10)):
        start = jitter(rng, porta, (20, 25, 30))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        end = tuple(np.asarray(start) + direction * rng.uniform(25, 45))
        code = T.PORTAL_VEIN if rng.uniform() < 0.6 else T.HEPATIC_VEIN
        _vessel(abdomen, rng, [start, end], [2.5, 1.2], code, wiggle_mm=3.0, clip=liver)

    # ---- muscles: psoas (growing downward) and the paraspinal groups
    psoas_r = np.clip(6.0 + 0.16 * (25.0 - z), 0.0, 26.0)
    for side in (-1, 1):
        cx = side * (26.0 + 0.5 * psoas_r)
        abdomen.paint(below & (((x - cx) / np.maximum(psoas_r, 1e-3)) ** 2 + ((y - spine_y + 2) / np.maximum(0.85 * psoas_r, 1e-3)) ** 2 < 1.0), T.MUSCLE)
        para = ((x - side * 33.0) / 27.0) ** 2 + ((y - spine_y - 50.0) / 21.0) ** 2 < 1.0 + 0.15 * mid
        abdomen.paint(body & para, T.MUSCLE)

    # ---- spine: vertebral bodies with discs, canal, arch, spinous and transverse processes
    level = np.mod(z - rng.uniform(0, 32), 32.0)
    disc = level < 8.0
    vb = ((x / 21.0) ** 2 + ((y - spine_y) / 17.0) ** 2)
    abdomen.paint(body & (vb < 1.0), T.BONE_CORTEX)
    abdomen.paint(body & (vb < 0.78), T.BONE_MARROW)
    abdomen.paint(body & (vb < 1.0) & disc, T.DISC)
    canal_y = spine_y + 26.0
    canal = (x / 9.0) ** 2 + ((y - canal_y) / 8.0) ** 2
    arch = body & (canal >= 1.0) & (x ** 2 + (y - canal_y) ** 2 < 15.0 ** 2) & (y > canal_y - 6.0) & ~disc
    abdomen.paint(arch, T.BONE_CORTEX)
    spinous = body & (np.abs(x) < 4.5) & (y > canal_y + 8.0) & (y < spine_y + 68.0) & (level > 12.0) & (level < 26.0)
    abdomen.paint(spinous, T.BONE_CORTEX)
    transverse = body & (np.abs(x) < 32.0) & (np.abs(y - canal_y + 4.0) < 3.5) & (level > 15.0) & (level < 21.0)
    abdomen.paint(transverse, T.BONE_CORTEX)
    abdomen.paint(body & (canal < 1.0), T.SPINAL_CANAL)

    # ---- ribs in the wall, sloping down toward the front, above the costal margin
    angle = np.degrees(np.abs(np.arctan2(x, -(y - 0.0))))  # 0 = anterior, 180 = posterior
    rib_z = z + 1.6 * (180.0 - angle)
    rib_phase = np.mod(rib_z - rng.uniform(0, 28), 28.0)
    costal_margin = -15.0 + 0.75 * (180.0 - angle)
    rib_depth = depth - fat_depth - 0.5 * wall_mm
    ribs = body & (np.abs(rib_depth) < 5.0) & (angle > 35.0) & (angle < 160.0) & (z > costal_margin) & (rib_phase < 8.0)
    abdomen.paint(ribs, T.BONE_CORTEX)
    abdomen.paint(ribs & (np.abs(rib_depth) < 3.0) & (rib_phase > 2.0) & (rib_phase < 6.0), T.BONE_MARROW)
    return abdomen
