"""A real ``predict``'s output folder loads into the scene as the fake one does.

The other scene tests run on :mod:`scene_fake_result`, whose arrays are made up so the tests
know where every structure lies (it writes them with ``PredictionResult.write``, the backend's
own writer). Here the folder comes from the real ``predict`` (real torch, tiny model packages
from ``Testing/backend/tiny_packages.py``), so a change in what ``predict`` returns or writes
that the scene logic cannot read fails here, and a result.json layout that differs from the
fake's fails too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scene_fake_result import oblique_direction

from MultiModalSeg.MultiModalSegSceneLib.result_loader import load_result
from MultiModalSeg.MultiModalSegSceneLib.slice_views import segment_voxel_counts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from tiny_packages import (  # noqa: E402  (the backend tests' tiny packages)
    make_threshold_dtc,
    make_tiny_maml,
    threshold_dtc_manifest,
    tiny_maml_manifest,
)


def oblique_image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((0.9, 0.8, 2.5))
    image.SetDirection(oblique_direction())
    image.SetOrigin((12.0, -30.0, -20.0))
    return image


def predict_into(folder: Path, package, images: dict[str, sitk.Image]) -> Path:
    """Write the inputs as files, run the real predict and write its folder as the CLI does."""
    from MultiModalSegLib.inference import predict

    inputs = {}
    for name, image in images.items():
        inputs[name] = str(folder / f"{name}.nii.gz")
        sitk.WriteImage(image, inputs[name])
    predict(package, images, device="cpu").write(folder / "result", inputs=inputs)
    return folder / "result"


def test_a_real_maml_result_loads_with_every_overlay(slicer_context, fake_result, tmp_path: Path) -> None:
    from MultiModalSegLib.weights import save_model_package

    package = save_model_package(make_tiny_maml(), tiny_maml_manifest(), tmp_path / "tiny-maml")
    rng = np.random.default_rng(0)
    images = {name: oblique_image(rng.normal(60, 25, size=(10, 24, 28))) for name in ("arterial", "venous")}
    result_dir = predict_into(tmp_path, package, images)

    loaded = load_result(slicer_context.scene, result_dir)
    assert set(loaded.input_volumes) == {"arterial", "venous"}
    assert loaded.reference_volume is loaded.input_volumes["venous"]
    assert list(loaded.overlays) == ["attention:arterial", "attention:venous", "probability:liver",
                                     "probability:tumor", "uncertainty"]
    segmentation = loaded.segmentation.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == [
        "liver", "tumor"]

    real = json.loads((result_dir / "result.json").read_text())
    fake = json.loads((fake_result["result_dir"] / "result.json").read_text())
    assert set(real) == set(fake)
    assert set(real["outputs"]) == set(fake["outputs"])
    assert sorted(real["files"]) == sorted(p.name for p in result_dir.iterdir())


def test_a_real_dtc_result_loads_with_its_level_set_and_exact_segment(slicer_context, tmp_path: Path) -> None:
    from MultiModalSegLib.weights import save_model_package

    package = save_model_package(make_threshold_dtc(), threshold_dtc_manifest(["mri"]), tmp_path / "threshold")
    array = np.zeros((16, 24, 20), dtype=np.float32)
    array[3:9, 5:15, 4:12] = 1.0  # the hand-set model labels exactly these 480 voxels
    result_dir = predict_into(tmp_path, package, {"mri": oblique_image(array)})

    loaded = load_result(slicer_context.scene, result_dir)
    assert list(loaded.overlays) == ["probability:object", "uncertainty", "level_set:object"]
    assert list(segment_voxel_counts(loaded.segmentation).values()) == [480]
    assert set(loaded.zero_contours) == {"object"}
