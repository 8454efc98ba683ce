"""``mmseg demo``: the main job on bundled sample data and bundled weights, for a first look.

1. One held-out phantom case of every kind (seed 2026, never trained on): images and label
   as NIfTI under ``cases/<kind>/`` and a montage ``<kind>.png`` each.
2. With the bundled ``maml-liver-ct2`` package: segment the two-phase liver case with both
   phases (``prediction/``) and with the arterial phase missing
   (``prediction-arterial-missing/``), score both against the phantom's truth
   (``metrics.json``, and a ``metrics`` event), and draw ``liver-ct2-segmentation.png``:
   both phases with the predicted outline, each phase's attention map, the uncertainty
   map, and the missing-phase result.

The Slicer scene and slice-view pictures are made from ``prediction/`` by the scene layer
(``make demo`` runs ``MultiModalSeg.MultiModalSegSceneLib.scene_writer`` next): the backend
never imports Slicer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from MultiModalSegLib.progress import ProgressReporter

CT_WINDOWS = {"arterial": (60, 400), "venous": (60, 400), "ct": (50, 400)}
"""Abdominal soft-tissue window (level, width) in HU for the CT montages."""

DEMO_MODEL = "maml-liver-ct2"


def _write_case_files(kind: str, case: dict[str, Any], output: Path) -> tuple[dict[str, Path], Path]:
    from MultiModalSegLib.imageio import write_image

    folder = output / "cases" / kind
    images = {}
    for modality, image in case["images"].items():
        images[modality] = write_image(image, folder / f"{kind}_{modality}.nii.gz")
    label = write_image(case["label"], folder / f"{kind}_label.nii.gz")
    return images, label


def score_against_truth(labelmap, truth, labels: list[dict[str, Any]], spacing_zyx) -> dict[str, dict[str, float]]:
    """Dice, HD95 and ASSD (mm) of each label of a prediction against the phantom's truth."""
    from MultiModalSegLib.metrics import dice, surface_metrics

    scores = {}
    for label in labels:
        predicted, reference = labelmap == label["value"], truth == label["value"]
        surface = surface_metrics(predicted, reference, spacing_zyx)
        scores[label["name"]] = {"dice": round(dice(predicted, reference), 4),
                                 "hd95_mm": round(surface["hd95"], 2), "assd_mm": round(surface["assd"], 2)}
    return scores


def _segmentation_montage(case: dict[str, Any], full, missing, path: Path) -> None:
    import numpy as np
    import SimpleITK as sitk

    from MultiModalSegLib.montage import MontagePanel, axial_slice, largest_label_slice, save_montage

    index = largest_label_slice(case["label"])

    def slice_of(array: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
        image.CopyInformation(case["label"])
        return axial_slice(image, index)[0]

    arterial, spacing = axial_slice(case["images"]["arterial"], index)
    venous, _ = axial_slice(case["images"]["venous"], index)
    predicted = slice_of(full.labelmap).astype(np.int16)
    truth = slice_of(sitk.GetArrayViewFromImage(case["label"])).astype(np.int16)
    window = CT_WINDOWS["venous"]
    common = {"window": window, "pixel_spacing": spacing}
    panels = [
        MontagePanel(arterial, "arterial + prediction", label=predicted, **common),
        MontagePanel(venous, "venous + prediction", label=predicted, **common),
        MontagePanel(venous, "venous + truth", label=truth, **common),
        MontagePanel(arterial, "attention: arterial", heat=slice_of(full.attention["arterial"]),
                     heat_threshold=0.05, heat_opacity=0.6, **common),
        MontagePanel(venous, "attention: venous", heat=slice_of(full.attention["venous"]),
                     heat_threshold=0.05, heat_opacity=0.6, **common),
        MontagePanel(venous, "uncertainty", heat=np.clip(slice_of(full.uncertainty) * 4, 0, 1),
                     heat_threshold=0.1, heat_opacity=0.7, **common),
        MontagePanel(venous, "arterial missing: prediction", label=slice_of(missing.labelmap).astype(np.int16),
                     **common),
    ]
    save_montage(panels, path, columns=4)


def run_demo(output: str | Path, seed: int = 2026, reporter: ProgressReporter | None = None,
             model: str = DEMO_MODEL) -> dict[str, Any]:
    """Write the demo into ``output`` (see the module docstring); return a summary."""
    import SimpleITK as sitk

    from MultiModalSegLib.atomic import atomic_write_json
    from MultiModalSegLib.errors import MultiModalSegError
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.montage import case_montage
    from MultiModalSegLib.phantoms import PHANTOM_KINDS, make_case
    from MultiModalSegLib.weights import load_model_package

    reporter = reporter or ProgressReporter(quiet=True)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files: list[Path] = []
    cases = {}
    kinds = list(PHANTOM_KINDS)
    for index, kind in enumerate(kinds, start=1):
        case = make_case(kind, seed)
        cases[kind] = case
        images, label = _write_case_files(kind, case, output)
        files += [*images.values(), label]
        windows = {m: CT_WINDOWS[m] for m in case["images"] if m in CT_WINDOWS}
        files.append(case_montage(case, output / f"{kind}.png", windows=windows or None))
        reporter.progress("phantoms", index, len(kinds), kind=kind)

    summary: dict[str, Any] = {"output": str(output.resolve()), "seed": seed}
    try:
        package = load_model_package(model)
    except MultiModalSegError as exc:
        reporter.warning(f"No segmentation in this demo: {exc}")
        package = None
    if package is not None:
        case = cases["liver-ct2"]
        network = package.build_network("cpu")
        inputs = {m: str((output / "cases" / "liver-ct2" / f"liver-ct2_{m}.nii.gz").resolve())
                  for m in case["images"]}
        full = predict(package, case["images"], device="cpu", network=network,
                       progress=lambda d, t: reporter.progress("segmenting (both phases)", d, t))
        result = full.write(output / "prediction", inputs=inputs)
        missing = predict(package, {"venous": case["images"]["venous"]}, device="cpu", network=network,
                          progress=lambda d, t: reporter.progress("segmenting (arterial missing)", d, t))
        missing.write(output / "prediction-arterial-missing", inputs={"venous": inputs["venous"]})
        truth = sitk.GetArrayFromImage(case["label"])
        spacing = tuple(reversed(case["label"].GetSpacing()))
        metrics = {
            "model": result["model"], "case": f"liver-ct2 seed {seed}",
            "both_phases": score_against_truth(full.labelmap, truth, package.labels, spacing),
            "arterial_missing": score_against_truth(missing.labelmap, truth, package.labels, spacing),
            "seconds": {"both_phases": full.timing["total_s"], "arterial_missing": missing.timing["total_s"]},
        }
        atomic_write_json(output / "metrics.json", metrics)
        reporter.emit("metrics", **metrics)
        picture = output / "liver-ct2-segmentation.png"
        _segmentation_montage(case, full, missing, picture)
        files += [output / "prediction" / "result.json", output / "metrics.json", picture]
        summary["metrics"] = metrics
    summary["files"] = [str(p.relative_to(output)) for p in files]
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary
