"""The measurements of ``tools/gpu_check.py``, one function per section (see that file for the why).

Each section has the :mod:`budgeted_sections` signature ``section(results, budget)`` once bound
to a :class:`CheckSettings` (``functools.partial``), fills ``results`` as it goes, and times
GPU work with ``torch.cuda.synchronize`` around it. ``settings.quick`` shrinks every size so the
whole check runs on a CPU in seconds (the test suite's dry run); the code paths are the same.
"""

from __future__ import annotations

import io
import itertools
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from budgeted_sections import Budget  # noqa: E402

DEMO_SEED = 2026
"""The demo's held-out phantom seed (``MultiModalSegLib.demo.run_demo``): never trained on."""

DEMO_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "maml-liver-ct2": ("liver-ct2", {}),
    "maml-brain-mr4": ("brain-mr4", {}),
    "dtc-atrium-mr": ("atrium-mr", {}),
    # trained on SPM templates (skull-stripped brains); its PD input has no phantom: predicted without it
    "maml-brain-tissue-mr3": ("brain-mr4", {"skull_stripped": True}),
}
"""The phantom kind (and options) of each bundled model's held-out demo case."""

AGREEMENT_DICE = 0.99
"""CPU fp32 and GPU AMP label maps must agree to this Dice per label."""
SDF_TOLERANCE = 1e-5
"""``signed_distance_map`` on CUDA must match the CPU result to this (absolute)."""


@dataclass
class CheckSettings:
    """What every section needs: the device under test, the size mode, timing repeats, a work folder."""

    device: str
    quick: bool
    repeats: int
    work: Path
    models: list[str] | None = None


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    """Peak GPU memory allocated by tensors since the last reset (None off CUDA)."""
    import torch

    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def bundled_package(model_id: str):
    """The repository's bundled package (its folder, so that no fine-tuned store version replaces it)."""
    from MultiModalSegLib.weights import bundled_models_dir, load_model_package

    return load_model_package(bundled_models_dir() / model_id)


def demo_case(model_id: str, package: Any, quick: bool) -> tuple[str, dict[str, Any]]:
    """The held-out demo case of a bundled model: ``(description, images by modality)``."""
    from MultiModalSegLib.phantoms import make_case

    kind, options = DEMO_CASES.get(model_id, (None, {}))
    if kind is None:  # a model added later: its training data names the phantom kind
        data = str((package.manifest.get("provenance") or {}).get("data", ""))
        if not data.startswith("phantom:"):
            raise ValueError(f"no demo case is known for {model_id}; add it to DEMO_CASES")
        kind = data.split(":")[1]
    if quick:
        options = {**options, "shape": tuple(package.patch_size)}
    case = make_case(kind, DEMO_SEED, **options)
    images = {name: case["images"][name] for name in package.modalities if name in case["images"]}
    shape = "x".join(str(n) for n in reversed(case["label"].GetSize()))
    return f"{kind} seed {DEMO_SEED} ({shape}; {', '.join(images)})", images


def compare_predictions(reference: Any, other: Any) -> dict[str, Any]:
    """Dice per label between two predictions of one case, and the largest difference of each map kind."""
    import numpy as np

    from MultiModalSegLib.metrics import dice

    def largest_difference(first: dict[str, Any], second: dict[str, Any]) -> float | None:
        values = [float(np.max(np.abs(first[k].astype(np.float32) - second[k].astype(np.float32))))
                  for k in first]
        return round(max(values), 5) if values else None

    dice_per_label = {label["name"]: round(float(dice(reference.labelmap == label["value"],
                                                      other.labelmap == label["value"])), 5)
                      for label in reference.labels}
    return {
        "dice_per_label": dice_per_label,
        "min_dice": min(dice_per_label.values()),
        "max_probability_difference": largest_difference(reference.probabilities, other.probabilities),
        "max_attention_difference": largest_difference(reference.attention, other.attention),
        "max_level_set_difference": largest_difference(reference.level_set, other.level_set),
        "max_uncertainty_difference": largest_difference({"u": reference.uncertainty}, {"u": other.uncertainty}),
    }


def section_bundled_models(settings: CheckSettings, results: dict[str, Any], budget: Budget) -> None:
    """(1) Every bundled model on its demo case: CPU fp32 vs the device with AMP; device time median."""
    from MultiModalSegLib.inference import predict
    from MultiModalSegLib.weights import bundled_models_dir

    models = settings.models or sorted(p.name for p in bundled_models_dir().iterdir()
                                       if (p / "manifest.json").is_file())
    warmups, repeats = (0, 1) if settings.quick else (1, settings.repeats)
    for model_id in models:
        budget.check(model_id)
        entry: dict[str, Any] = {}
        results[model_id] = entry
        try:
            package = bundled_package(model_id)
            entry["case"], images = demo_case(model_id, package, settings.quick)
            started = time.perf_counter()
            on_cpu = predict(package, images, device="cpu")
            entry["cpu_fp32_s"] = round(time.perf_counter() - started, 3)
            network = package.build_network(settings.device)
            reset_peak_memory(settings.device)
            seconds, inference = [], []
            for run in range(warmups + repeats):
                started = time.perf_counter()
                on_device = predict(package, images, device=settings.device, network=network)
                synchronize(settings.device)
                if run >= warmups:
                    seconds.append(time.perf_counter() - started)
                    inference.append(on_device.timing["inference_s"])
            entry.update({
                "device_s_median": round(statistics.median(seconds), 3),
                "device_inference_s_median": round(statistics.median(inference), 3),
                "device_runs": len(seconds), "windows": on_device.timing["windows"],
                "peak_gpu_memory_gib": peak_memory_gib(settings.device),
                **compare_predictions(on_cpu, on_device)})
            entry["passed"] = entry["min_dice"] >= AGREEMENT_DICE
        except Exception as error:  # noqa: BLE001 -- one model's failure must not hide the others'
            entry.update(passed=False, error=f"{type(error).__name__}: {error}")


def synthetic_ct(shape: tuple[int, int, int], seed: int):
    """An int16 CT in HU: air around an elliptic body of soft tissue with noise; 0.8 x 0.8 x 2.5 mm."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = shape
    yy, xx = np.ogrid[:y, :x]
    body = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.47 * x)) ** 2 <= 1.0
    array = np.full(shape, -1000, dtype=np.int16)
    for index in range(z):  # slice by slice: a 512x512x200 float array would need 0.2 GB more
        noisy = 40.0 + 30.0 * rng.standard_normal((y, x), dtype=np.float32)
        array[index][body] = noisy[body].astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    return image


def section_large_ct(settings: CheckSettings, results: dict[str, Any], budget: Budget) -> None:
    """(2) A two-phase 512x512x200 CT through predict on the device with the bundled liver model."""
    from MultiModalSegLib.inference import predict

    shape = (32, 64, 64) if settings.quick else (200, 512, 512)
    results["input"] = f"two-phase CT {shape[2]}x{shape[1]}x{shape[0]} (x, y, z), int16, 0.8 x 0.8 x 2.5 mm"
    images = {"arterial": synthetic_ct(shape, 1), "venous": synthetic_ct(shape, 2)}
    package = bundled_package("maml-liver-ct2")
    budget.check("the prediction")
    reset_peak_memory(settings.device)
    started = time.perf_counter()
    result = predict(package, images, device=settings.device)
    synchronize(settings.device)
    results.update({"model": package.id, "wall_s": round(time.perf_counter() - started, 2),
                    "timing": result.timing, "peak_gpu_memory_gib": peak_memory_gib(settings.device),
                    "labelmap_shape": list(result.labelmap.shape)})
    if settings.device.startswith("cuda"):
        import torch

        results["peak_gpu_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    results["passed"] = tuple(result.labelmap.shape) == shape


def section_signed_distance(settings: CheckSettings, results: dict[str, Any], budget: Budget) -> None:
    """(3) ``signed_distance_map`` on device tensors vs the CPU result; device time for 4 x 112x112x80."""
    import numpy as np
    import torch
    from bench.bench_sdf import blobby_masks

    from MultiModalSegLib.levelset import signed_distance_map

    shape = (2, 16, 24, 24) if settings.quick else (4, 80, 112, 112)
    results["masks"] = f"{shape[0]} x {shape[3]}x{shape[2]}x{shape[1]} (x, y, z) blobby masks"
    masks = torch.from_numpy(blobby_masks(shape[0], shape[1:], np.random.default_rng(0)))
    started = time.perf_counter()
    on_cpu = signed_distance_map(masks)
    results["cpu_s"] = round(time.perf_counter() - started, 3)
    on_device_masks = masks.to(settings.device)
    warmups, repeats = (0, 1) if settings.quick else (1, settings.repeats)
    seconds = []
    for run in range(warmups + repeats):
        budget.check("the next SDF run")
        synchronize(settings.device)
        started = time.perf_counter()
        on_device = signed_distance_map(on_device_masks)
        synchronize(settings.device)
        if run >= warmups:
            seconds.append(time.perf_counter() - started)
    difference = float((on_device.cpu() - on_cpu).abs().max())
    results.update({"device": str(on_device.device), "device_s_median": round(statistics.median(seconds), 4),
                    "max_abs_difference": difference, "passed": difference <= SDF_TOLERANCE})


def training_specs(quick: bool) -> list[dict[str, Any]]:
    """The references' training sizes: DTC's VNet-16, batch 4 (2 labeled) of 80x112x112; MAML (and its
    U-Net baseline) at the bundled brain model's width, batch 2 of 128^3. ``quick``: 16^3 and 32^3."""
    from MultiModalSegLib.bundled_configs import brain_tumor_maml_architecture

    brain = brain_tumor_maml_architecture()["config"]
    shared = {key: brain[key] for key in ("strides", "deep_supervision")}
    maml_patch = (32, 32, 32) if quick else (128, 128, 128)  # 16^3 leaves a 1^3 bottleneck: no instance norm
    specs = [
        {"method": "dtc", "network": "DTC VNet base 16", "patch": (16, 16, 16) if quick else (80, 112, 112),
         "batch": 4, "labeled": 2, "modalities": ["mri"], "foreground": 1, "overrides": {}},
        {"method": "maml", "network": "MAML at maml-brain-mr4's width (4 branches, base 8, max 64)",
         "patch": maml_patch, "batch": 2, "labeled": 2, "modalities": list(brain["modalities"]), "foreground": 3,
         "overrides": {**shared, "ma_kernel": brain["ma_kernel"], "absent_fill": brain["absent_fill"]}},
        {"method": "unet", "network": "U-Net baseline (early fusion) at the same width",
         "patch": maml_patch, "batch": 2, "labeled": 2, "modalities": list(brain["modalities"]), "foreground": 3,
         "overrides": shared},
    ]
    for spec in specs:
        z, y, x = spec["patch"]
        spec["what"] = f"{spec['network']}, batch {spec['batch']} ({spec['labeled']} labeled) of {x}x{y}x{z}"
    return specs


def synthetic_batch(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """A loader-shaped batch: noise images, nested spheres as labels (one class per shell), SDFs for DTC."""
    import numpy as np

    from MultiModalSegLib.levelset import signed_distance_map

    rng = np.random.default_rng(seed)
    patch, batch, labeled = spec["patch"], spec["batch"], spec["labeled"]
    grid = np.stack(np.meshgrid(*(np.arange(n) / n for n in patch), indexing="ij"))
    labels = np.zeros((labeled, *patch), dtype=np.int64)
    for index in range(labeled):
        distance = np.sqrt((((grid.T - rng.uniform(0.4, 0.6, 3)).T) ** 2).sum(axis=0))
        for value in range(1, spec["foreground"] + 1):  # the inner shells get the higher classes
            labels[index][distance < 0.35 / value] = value
    record = {"image": rng.standard_normal((batch, len(spec["modalities"]), *patch), dtype=np.float32),
              "label": labels, "labeled_batch_size": labeled}
    if spec["method"] == "dtc":
        record["sdf"] = np.stack([signed_distance_map(labels == value) for value in range(1, spec["foreground"] + 1)],
                                 axis=1).astype(np.float32)
    return record


def time_training_step(spec: dict[str, Any], settings: CheckSettings, steps: int) -> dict[str, Any]:
    """One warm-up and ``steps`` timed iterations of the real training loop (AMP and grad scaler on CUDA)."""
    import torch

    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.cancellation import CancellationToken
    from MultiModalSegLib.training.checkpoint import TrainingState
    from MultiModalSegLib.training.config import TrainingConfig
    from MultiModalSegLib.training.distributed import DistributedContext
    from MultiModalSegLib.training.loop import TrainingLoop
    from MultiModalSegLib.training.setup import (
        build_network,
        build_optimizer,
        build_step,
        make_grad_scaler,
        network_architecture,
        seed_everything,
        use_channels_last,
    )

    device = torch.device(settings.device)
    amp = device.type == "cuda"
    labeled = spec["labeled"] if spec["labeled"] < spec["batch"] else None
    config = TrainingConfig.for_method(spec["method"], patch_size=spec["patch"], batch_size=spec["batch"],
                                       labeled_batch_size=labeled, device=settings.device, amp=amp,
                                       iterations=steps + 1, architecture_overrides=spec["overrides"] or None)
    config.maml.base_filters, config.maml.max_filters = 8, 64  # the bundled models' width
    seed_everything(0, deterministic=False)
    network = build_network(network_architecture(config, spec["modalities"], spec["foreground"]),
                            spec["patch"]).to(device)
    channels_last = use_channels_last(device, config.channels_last)
    if channels_last:
        network = network.to(memory_format=torch.channels_last_3d)
    optimizer = build_optimizer(network, config.optimizer)
    scaler = make_grad_scaler(device, amp)
    step = build_step(config)
    batches = itertools.repeat(synthetic_batch(spec, 0))

    def run(first: int, last: int) -> TrainingState:
        return TrainingLoop(network=network, module=network, optimizer=optimizer, step=step, batches=batches,
                            optimizer_config=config.optimizer,
                            state=TrainingState(iteration=first, total_iterations=last, config={},
                                                method=spec["method"]),
                            device=device, context=DistributedContext(), token=CancellationToken(),
                            reporter=ProgressReporter(quiet=True), amp=amp, grad_scaler=scaler,
                            channels_last=channels_last).run()

    run(0, 1)  # warm-up: kernels, allocator, cuDNN's choices
    synchronize(settings.device)
    reset_peak_memory(settings.device)
    started = time.perf_counter()
    state = run(1, steps + 1)
    synchronize(settings.device)
    return {"what": spec["what"], "parameters": sum(p.numel() for p in network.parameters()),
            "amp": amp, "steps": steps, "seconds_per_step": round((time.perf_counter() - started) / steps, 4),
            "peak_gpu_memory_gib": peak_memory_gib(settings.device),
            "last_loss": round(state.last_losses.get("loss", float("nan")), 5)}


def section_training_steps(settings: CheckSettings, results: dict[str, Any], budget: Budget) -> None:
    """(4a) One AMP training step of each method at the references' sizes (mean of the timed steps)."""
    steps = 1 if settings.quick else settings.repeats
    for spec in training_specs(settings.quick):
        budget.check(f"the {spec['method']} step")
        try:
            results[spec["method"]] = time_training_step(spec, settings, steps)
        except Exception as error:  # noqa: BLE001 -- one method's failure must not hide the others'
            results[spec["method"]] = {"what": spec["what"], "error": f"{type(error).__name__}: {error}"}


def section_finetune(settings: CheckSettings, results: dict[str, Any], budget: Budget) -> None:
    """(4b) 200 fine-tuning iterations of the bundled liver model (the Slicer button's default run)."""
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.config import FinetuneConfig
    from MultiModalSegLib.training.finetune import finetune
    from MultiModalSegLib.weights import bundled_models_dir

    iterations = 2 if settings.quick else 200
    cases = "1:{}?shape=32x64x64" if settings.quick else "2:{}"  # 2 + 2 phantoms at the default 48x128x128
    labeled, unlabeled = f"phantom:liver-ct2:{cases.format(11)}", f"phantom:liver-ct2:{cases.format(12)}"
    config = FinetuneConfig(iterations=iterations, device=settings.device, amp=True, progress_every=1)
    stream = io.StringIO()
    results.update({"model": "maml-liver-ct2", "iterations": iterations, "labeled": labeled, "unlabeled": unlabeled,
                    "batch": f"{config.batch_size} ({config.labeled_batch_size} labeled)"})
    reset_peak_memory(settings.device)
    outcome = finetune(bundled_models_dir() / "maml-liver-ct2", labeled, unlabeled, settings.work / "finetune",
                       config, reporter=ProgressReporter(stream=stream), write_to_store=False)
    events = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    per_iteration = [e["seconds_per_iteration"] for e in events  # the training events (not "saving")
                     if e.get("event") == "progress" and "seconds_per_iteration" in e]
    steady = per_iteration[3:] or per_iteration
    results.update({"wall_s": round(outcome.seconds, 2), "training_s": round(sum(per_iteration), 2),
                    "median_s_per_iteration": round(statistics.median(steady), 4),
                    "peak_gpu_memory_gib": peak_memory_gib(settings.device),
                    "final_losses": {k: round(v, 5) for k, v in outcome.final_losses.items()},
                    "passed": outcome.iterations == iterations})
