"""CT attenuation of abdominal tissues and how contrast timing changes it.

Every tissue has an unenhanced attenuation (HU) and an enhancement (HU added by iodine)
in the standard late-arterial and portal-venous phases. Enhancement follows the blood
compartment that feeds the tissue (``artery``, ``portal``, ``systemic_vein``, ``liver``,
...), so a different contrast timing (the ``shifted`` appearance) is a gain per
compartment. Values are typical of a 120 kVp multiphase liver CT: aorta ~300 HU arterial,
liver ~65 HU arterial / ~105 HU venous, fat -100 HU, air -1000 HU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy import ndimage

from MultiModalSegLib.phantoms.shapes import correlated_noise, partial_volume_blur


@dataclass(frozen=True)
class CTTissue:
    """Attenuation of one tissue: unenhanced HU, enhancement per phase, texture sd."""

    name: str
    unenhanced: float
    arterial_enhancement: float
    venous_enhancement: float
    texture_sd: float
    compartment: str = "none"
    arterial_texture_sd: float = 0.0  # extra arterial-phase heterogeneity (the spleen's "zebra")


class Tissue(IntEnum):
    """Codes of the tissue map shared by the abdominal phantoms (index into CT_TISSUES)."""

    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3
    BONE_CORTEX = 4
    BONE_MARROW = 5
    DISC = 6
    SPINAL_CANAL = 7
    TABLE = 8
    HEART_BLOOD = 9
    MYOCARDIUM = 10
    LIVER = 11
    SPLEEN = 12
    KIDNEY_CORTEX = 13
    KIDNEY_MEDULLA = 14
    RENAL_SINUS = 15
    AORTA = 16
    ARTERY = 17
    IVC = 18
    PORTAL_VEIN = 19
    HEPATIC_VEIN = 20
    RENAL_VEIN = 21
    GI_WALL = 22
    GI_FLUID = 23
    GAS = 24
    STOOL = 25
    GALLBLADDER = 26
    PANCREAS = 27
    ADRENAL = 28


CT_TISSUES: dict[Tissue, CTTissue] = {
    Tissue.AIR: CTTissue("air", -1000, 0, 0, 0),
    Tissue.LUNG: CTTissue("lung", -860, 0, 0, 25),
    Tissue.FAT: CTTissue("fat", -100, 0, 0, 8),
    Tissue.MUSCLE: CTTissue("muscle", 45, 8, 15, 5, "organ"),
    Tissue.BONE_CORTEX: CTTissue("cortical bone", 750, 0, 0, 60),
    Tissue.BONE_MARROW: CTTissue("cancellous bone", 230, 0, 0, 35),
    Tissue.DISC: CTTissue("intervertebral disc", 80, 0, 5, 5),
    Tissue.SPINAL_CANAL: CTTissue("spinal canal", 25, 0, 5, 3),
    Tissue.TABLE: CTTissue("table", 120, 0, 0, 10),
    Tissue.HEART_BLOOD: CTTissue("heart blood pool", 40, 200, 120, 5, "artery"),
    Tissue.MYOCARDIUM: CTTissue("myocardium", 45, 80, 60, 5, "organ"),
    Tissue.LIVER: CTTissue("liver", 55, 10, 50, 4, "liver"),
    Tissue.SPLEEN: CTTissue("spleen", 48, 70, 67, 4, "organ", arterial_texture_sd=25),
    Tissue.KIDNEY_CORTEX: CTTissue("renal cortex", 35, 150, 125, 6, "kidney_cortex"),
    Tissue.KIDNEY_MEDULLA: CTTissue("renal medulla", 35, 35, 120, 6, "kidney_medulla"),
    Tissue.RENAL_SINUS: CTTissue("renal sinus", -60, 0, 0, 15),
    Tissue.AORTA: CTTissue("aorta", 40, 270, 125, 5, "artery"),
    Tissue.ARTERY: CTTissue("visceral artery", 40, 240, 115, 5, "artery"),
    Tissue.IVC: CTTissue("inferior vena cava", 40, 50, 100, 8, "systemic_vein"),
    Tissue.PORTAL_VEIN: CTTissue("portal vein", 40, 95, 140, 5, "portal"),
    Tissue.HEPATIC_VEIN: CTTissue("hepatic vein", 40, 15, 120, 5, "systemic_vein"),
    Tissue.RENAL_VEIN: CTTissue("renal vein", 40, 130, 120, 5, "systemic_vein"),
    Tissue.GI_WALL: CTTissue("bowel wall", 40, 60, 50, 6, "organ"),
    Tissue.GI_FLUID: CTTissue("bowel fluid", 15, 0, 0, 6),
    Tissue.GAS: CTTissue("bowel gas", -1000, 0, 0, 0),
    Tissue.STOOL: CTTissue("stool", -80, 0, 0, 70),
    Tissue.GALLBLADDER: CTTissue("gallbladder", 8, 0, 0, 3),
    Tissue.PANCREAS: CTTissue("pancreas", 45, 75, 55, 7, "organ"),
    Tissue.ADRENAL: CTTissue("adrenal", 30, 40, 50, 5, "organ"),
}


@dataclass(frozen=True)
class ContrastTiming:
    """How one acquisition deviates from the standard protocol.

    ``arterial_gain`` / ``venous_gain`` scale each compartment's enhancement; ``noise_hu``
    is the image noise sd, ``blur_fwhm_voxels`` the point-spread width ``(z, y, x)`` and
    ``noise_grain_voxels`` the noise correlation of the reconstruction kernel.
    """

    name: str
    arterial_gain: dict[str, float] = field(default_factory=dict)
    venous_gain: dict[str, float] = field(default_factory=dict)
    noise_hu: float = 12.0
    blur_fwhm_voxels: tuple[float, float, float] = (1.0, 1.2, 1.2)
    noise_grain_voxels: tuple[float, float, float] = (0.0, 0.6, 0.6)


CONTRAST_TIMINGS: dict[str, ContrastTiming] = {
    # Late arterial and portal-venous phases, standard dose, standard kernel.
    "standard": ContrastTiming("standard"),
    # Early arterial (the portal system barely filled, parenchyma weakly enhanced), a
    # delayed, washed-out venous phase, lower dose: more noise, a smoother kernel.
    "shifted": ContrastTiming(
        "shifted",
        arterial_gain={
            "artery": 1.3, "portal": 0.35, "systemic_vein": 0.4, "liver": 0.4, "organ": 0.75,
            "kidney_cortex": 1.0, "kidney_medulla": 0.4, "lesion": 0.65,
        },
        venous_gain={
            "artery": 0.75, "portal": 0.75, "systemic_vein": 0.8, "liver": 0.8, "organ": 0.85,
            "kidney_cortex": 0.9, "kidney_medulla": 1.0, "lesion": 0.8,
        },
        noise_hu=20.0,
        blur_fwhm_voxels=(1.4, 1.8, 1.8),
        noise_grain_voxels=(0.3, 0.9, 0.9),
    ),
}


class TissuePalette:
    """The tissues of one case: the shared table plus case-specific ones (lesions)."""

    def __init__(self) -> None:
        self.tissues: list[CTTissue] = [CT_TISSUES[t] for t in Tissue]

    def add(self, tissue: CTTissue) -> int:
        """Register a case-specific tissue; returns its code in the tissue map."""
        if len(self.tissues) >= 255:
            raise ValueError("a tissue map holds at most 255 tissues")
        self.tissues.append(tissue)
        return len(self.tissues) - 1

    def lookup(self, phase: str, timing: ContrastTiming) -> tuple[np.ndarray, np.ndarray]:
        """Per-code mean HU and texture sd for ``phase`` ("arterial", "venous" or
        "unenhanced") under ``timing``."""
        means, textures = [], []
        for t in self.tissues:
            if phase == "arterial":
                gain = timing.arterial_gain.get(t.compartment, 1.0)
                means.append(t.unenhanced + gain * t.arterial_enhancement)
                textures.append(np.hypot(t.texture_sd, t.arterial_texture_sd))
            elif phase == "venous":
                gain = timing.venous_gain.get(t.compartment, 1.0)
                means.append(t.unenhanced + gain * t.venous_enhancement)
                textures.append(t.texture_sd)
            else:
                means.append(t.unenhanced)
                textures.append(t.texture_sd)
        return np.asarray(means, np.float32), np.asarray(textures, np.float32)


def render_ct_phase(
    rng: np.random.Generator,
    tissue_map: np.ndarray,
    palette: TissuePalette,
    phase: str,
    timing: ContrastTiming,
    texture: np.ndarray,
    shift_voxels: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """HU volume (float32) of one phase: tissue means plus texture, the scanner blur
    (partial volume), an optional rigid shift (patient motion between phases), noise.

    ``texture`` is a unit-sd smooth field shared by the phases of a case (the same
    anatomy seen twice); the noise is drawn fresh for each phase.
    """
    means, textures = palette.lookup(phase, timing)
    volume = means[tissue_map] + textures[tissue_map] * texture
    volume = partial_volume_blur(volume, [f / 2.3548 for f in timing.blur_fwhm_voxels])
    if shift_voxels is not None and any(abs(s) > 1e-6 for s in shift_voxels):
        volume = ndimage.shift(volume, shift_voxels, order=1, mode="nearest")
    volume += correlated_noise(rng, volume.shape, timing.noise_hu, timing.noise_grain_voxels)
    return np.clip(volume, -1024.0, 3071.0).astype(np.float32)
