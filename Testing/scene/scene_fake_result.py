"""A small fake ``predict`` output folder, written by the backend's own writer.

It stands in for a real ``predict`` run so that the scene tests know exactly where every
structure is. Only the arrays are made up: they are handed to
:meth:`MultiModalSegLib.inference.PredictionResult.write`, the code that writes a real
``predict``'s folder, so the file names and ``result.json`` cannot drift from the backend's
(``test_scene_real_predict.py`` loads a real ``predict``'s folder as well). The input is
oblique and anisotropic on purpose: a rotated direction matrix and spacing
(0.9, 0.8, 2.5) mm, so any LPS/RAS, axis-order or spacing mistake moves voxels.

Structures are placed in patient RAS millimetres (not voxel indices), so the tests know
where they are in the scene: a "liver" ellipsoid around :data:`LIVER_CENTER_RAS` and a
"tumor" sphere :data:`TUMOR_OFFSET_RAS` from it, to the patient's right (+R).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from MultiModalSegLib.inference import PredictionResult

SIZE_XYZ = (80, 72, 24)
SPACING_XYZ = (0.9, 0.8, 2.5)
LIVER_RADII_MM = np.array([22.0, 18.0, 15.0])
TUMOR_RADIUS_MM = 7.0
TUMOR_OFFSET_RAS = np.array([13.0, 0.0, 0.0])
"""The tumor lies 13 mm to the patient's right of the liver centre."""

LABELS = [
    {
        "value": 1,
        "name": "liver",
        "color": [0.86, 0.55, 0.39],
        "terminology": {
            "category": {"scheme": "SCT", "code": "123037004", "meaning": "Anatomical Structure"},
            "type": {"scheme": "SCT", "code": "10200004", "meaning": "Liver"},
        },
    },
    {"value": 2, "name": "tumor", "color": [0.9, 0.2, 0.2]},
]
LIVER_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
    "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
)


def oblique_direction() -> tuple[float, ...]:
    """A rotation of 20 degrees about S followed by 10 degrees about L: a tilted, turned grid."""
    a, b = math.radians(20.0), math.radians(10.0)
    about_z = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return tuple((about_x @ about_z).flatten())


def reference_image() -> sitk.Image:
    """An empty float image with the oblique, anisotropic geometry (origin in LPS, as in files)."""
    image = sitk.Image(list(SIZE_XYZ), sitk.sitkFloat32)
    image.SetSpacing(SPACING_XYZ)
    image.SetDirection(oblique_direction())
    image.SetOrigin((12.0, -30.0, -20.0))
    return image


def voxel_ras_positions(image: sitk.Image) -> np.ndarray:
    """RAS (mm) of every voxel centre, array order ``[z, y, x, 3]``."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in reversed(size)), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.array(image.GetOrigin()) + (index * np.array(image.GetSpacing())) @ direction.T
    return lps * np.array([-1.0, -1.0, 1.0])


def centre_ras(image: sitk.Image) -> np.ndarray:
    """RAS of the image's central voxel: the liver centre."""
    centre_index = [(n - 1) / 2.0 for n in image.GetSize()]
    lps = np.array(image.TransformContinuousIndexToPhysicalPoint(centre_index))
    return lps * np.array([-1.0, -1.0, 1.0])


def _write(array: np.ndarray, reference: sitk.Image, path: Path, pixel_type: str = "float32") -> str:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(pixel_type)))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path.name


def write_fake_result(folder: Path, seed: int = 0) -> dict:
    """Write inputs (``inputs/``) and a predict output folder (``result/``) under ``folder``.

    Returns a dict with ``result_dir``, ``inputs`` (modality -> path), ``labelmap`` (array
    ``[z, y, x]``), ``liver_center_ras`` and ``tumor_center_ras``.
    """
    folder = Path(folder)
    inputs_dir, result_dir = folder / "inputs", folder / "result"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    result_dir.mkdir(parents=True, exist_ok=True)
    reference = reference_image()
    ras = voxel_ras_positions(reference)
    liver_center = centre_ras(reference)
    tumor_center = liver_center + TUMOR_OFFSET_RAS

    liver_distance = np.sqrt((((ras - liver_center) / LIVER_RADII_MM) ** 2).sum(axis=-1))  # 1 on the surface
    tumor_distance_mm = np.sqrt(((ras - tumor_center) ** 2).sum(axis=-1)) - TUMOR_RADIUS_MM  # < 0 inside
    liver = liver_distance <= 1.0
    tumor = tumor_distance_mm <= 0.0
    labelmap = np.zeros(liver.shape, dtype=np.uint8)
    labelmap[liver] = 1
    labelmap[tumor] = 2

    rng = np.random.default_rng(seed)
    inputs = {}
    for modality, (liver_gain, tumor_gain) in {"arterial": (30.0, 110.0), "venous": (60.0, -40.0)}.items():
        image = 100.0 + 12.0 * rng.standard_normal(liver.shape) + liver_gain * liver + tumor_gain * tumor
        inputs[modality] = str((inputs_dir / _write(image, reference, inputs_dir / f"{modality}.nii.gz")).absolute())

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    tumor_probability = sigmoid(-tumor_distance_mm / 1.5)
    liver_probability = sigmoid(-(liver_distance - 1.0) * 12.0) * (1.0 - tumor_probability)
    level_set = np.tanh(tumor_distance_mm / 10.0)  # DTC: negative inside, in [-1, 1]
    # MAML's maps (attention) and DTC's (level set) together, so every overlay kind is present
    prediction = PredictionResult(
        reference=reference,
        reference_modality="venous",
        available=["arterial", "venous"],
        labelmap=labelmap,
        probabilities={"liver": liver_probability, "tumor": tumor_probability},
        attention={"arterial": 0.2 + 0.7 * tumor_probability, "venous": 0.8 * liver_probability},
        level_set={"tumor": level_set},
        uncertainty=0.3 * np.exp(-(tumor_distance_mm / 2.0) ** 2),
        labels=LABELS,
        model={"id": "fake-model", "version": 1, "method": "maml"},
        timing={"total_s": 0.0, "windows": 0, "device": "cpu"},
    )
    prediction.write(result_dir, inputs=inputs)
    return {
        "result_dir": result_dir,
        "inputs": inputs,
        "labelmap": labelmap,
        "reference": reference,
        "liver_center_ras": liver_center,
        "tumor_center_ras": tumor_center,
    }
