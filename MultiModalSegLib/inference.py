"""``predict``: a model package + named modality images -> label map, probabilities, overlays.

The steps, each explained where it happens:

1. check the inputs against the manifest (known modality names, at least one present,
   all present unless the model handles missing modalities, 3D, finite voxels);
2. bring every modality onto the reference modality's grid (``preprocessing.align_to_reference``),
   normalise each as the package's data plan says (``data_plan``; CT with the training set's
   foreground statistics) and resample the stack to the plan's target spacing
   (``plan_space``): the network always sees voxels of the size it was trained on;
3. run the network over Gaussian-blended sliding windows (AMP on CUDA; ``tta``: averaged over
   mirrored copies);
4. resample the class probabilities (and every overlay) back onto the reference grid
   (linear), then take the label there (argmax for MAML's softmax; one-vs-rest
   sigmoid > 0.5 for DTC), and keep the largest component of the labels the plan chose on
   validation (or of all / none, when asked);
5. return everything on the reference image's exact grid (origin, spacing, direction), so
   the outputs overlay the inputs in Slicer, with the grid warnings of ``grid_checks``.

A package without a plan (the v1 bundled models, a user's older version) runs on the input
grid with per-image normalisation, as before plans existed, and says so in a warning.

Besides the label map, the result carries what a clinician looks at: per-class
probabilities, MAML's per-modality attention (mean over feature channels, in [0, 1]), DTC's
level set, and an uncertainty map that says where to look first (MAML: disagreement between
each modality branch and the joint output; DTC: ``|sigmoid(seg) - heaviside(level set)|``,
the dual-task inconsistency the method trains away).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.postprocessing import keep_largest_component

__all__ = ["PredictionResult", "keep_largest_component", "predict", "probabilities_to_labels"]

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk
    import torch

    from MultiModalSegLib.data_plan import DataPlan
    from MultiModalSegLib.plan_space import Grid
    from MultiModalSegLib.weights import ModelPackage

ProgressCallback = Callable[[int, int], None]


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MultiModalSegError(
            f"Device '{device}' was asked for but PyTorch sees no CUDA GPU here; use --device cpu or auto.")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise MultiModalSegError(f"Unknown device '{device}'; use auto, cpu or cuda.")
    return device


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "label"


@dataclass
class PredictionResult:
    """Everything ``predict`` computed, as arrays on the reference grid plus that grid.

    Arrays are ``[z, y, x]`` (``float16`` maps to save memory on large CT volumes);
    ``to_image`` turns one into a SimpleITK image with the reference geometry and
    ``write`` saves them all with a ``result.json``.
    """

    reference: sitk.Image
    reference_modality: str
    available: list[str]
    labelmap: np.ndarray
    probabilities: dict[str, np.ndarray]
    attention: dict[str, np.ndarray]
    level_set: dict[str, np.ndarray]
    uncertainty: np.ndarray
    labels: list[dict[str, Any]]
    model: dict[str, Any]
    alignment: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    grids: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    postprocessing: dict[str, Any] = field(default_factory=dict)

    def to_image(self, array: np.ndarray, pixel_type: str = "float32") -> sitk.Image:
        """An output array as a SimpleITK image with the reference's exact geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(pixel_type, copy=False)))
        image.CopyInformation(self.reference)
        return image

    @property
    def labelmap_image(self) -> sitk.Image:
        return self.to_image(self.labelmap, "uint8")

    def write(self, folder: str | Path, inputs: dict[str, str] | None = None) -> dict[str, Any]:
        """Write every output as NIfTI plus ``result.json`` (docs/architecture.md); return the JSON."""
        from MultiModalSegLib.atomic import atomic_write_json
        from MultiModalSegLib.imageio import write_image

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files: list[str] = []

        def save(array: np.ndarray, name: str, pixel_type: str = "float32") -> str:
            write_image(self.to_image(array, pixel_type), folder / name)
            files.append(name)
            return name

        outputs: dict[str, Any] = {
            "labelmap": save(self.labelmap, "labelmap.nii.gz", "uint8"),
            "probabilities": {k: save(v, f"probability_{_safe_name(k)}.nii.gz") for k, v in self.probabilities.items()},
            "attention": {k: save(v, f"attention_{_safe_name(k)}.nii.gz") for k, v in self.attention.items()},
            "level_set": {k: save(v, f"level_set_{_safe_name(k)}.nii.gz") for k, v in self.level_set.items()},
            "uncertainty": save(self.uncertainty, "uncertainty.nii.gz"),
        }
        result = {
            "model": self.model,
            "reference_modality": self.reference_modality,
            "available": self.available,
            "inputs": dict(inputs or {}),
            "labels": self.labels,
            "outputs": outputs,
            "alignment": self.alignment,
            "grids": self.grids,
            "postprocessing": self.postprocessing,
            "warnings": self.warnings,
            "files": files + ["result.json"],
            "timing": self.timing,
        }
        atomic_write_json(folder / "result.json", result)
        return result


def _check_inputs(package: ModelPackage, images: dict[str, sitk.Image]) -> list[str]:
    """Validate names and images; return the available modalities in manifest order."""
    from MultiModalSegLib.imageio import validate_image

    known = package.modalities
    if not images:
        raise MultiModalSegError(
            f"No input image was given; model '{package.id}' expects {', '.join(known)} "
            "(for example --input " + f"{known[0]}=image.nii.gz).")
    unknown = sorted(set(images) - set(known))
    if unknown:
        raise MultiModalSegError(
            f"Model '{package.id}' has no modality named {', '.join(unknown)}; its modalities are "
            f"{', '.join(known)}. Name each input by one of them.")
    available = [name for name in known if name in images]
    missing = [name for name in known if name not in images]
    if missing and not package.supports_missing_modalities:
        raise MultiModalSegError(
            f"Model '{package.id}' needs every modality ({', '.join(known)}) but {', '.join(missing)} "
            "is missing; add it, or pick a MAML model, which handles missing modalities.")
    for name in available:
        validate_image(images[name], name)
    return available


def _normalisation_for(package: ModelPackage, modality: str) -> tuple[str, dict[str, Any] | None]:
    """Scheme and settings of a package without a plan (its manifest's ``preprocessing``)."""
    entry = next(m for m in package.manifest["modalities"] if m["name"] == modality)
    scheme = entry.get("normalization", "none")
    per_modality = package.manifest.get("preprocessing", {}).get("normalization", {})
    settings = per_modality.get(modality) if isinstance(per_modality, dict) else None
    if settings is None:
        settings = {k: v for k, v in package.manifest.get("preprocessing", {}).items() if k != "normalization"}
    return scheme, settings


@dataclass
class PreparedInput:
    """A case ready for the network: the normalised stack on the plan's grid, and the way back.

    ``volume`` is ``[M, z, y, x]`` float32 on ``network_grid`` (one channel per modality of the
    package, zeros for an absent one); ``reference_grid`` is the reference image's grid, where
    every output returns.
    """

    volume: np.ndarray
    reference: sitk.Image
    reference_name: str
    alignment: list[dict[str, Any]]
    reference_grid: Grid
    network_grid: Grid
    plan: DataPlan | None
    warnings: list[str]


def prepare_input_volume(package: ModelPackage, images: dict[str, sitk.Image], available: list[str]
                         ) -> PreparedInput:
    """Align, normalise and resample the available modalities into the plan's space.

    Each modality is aligned to the reference grid, normalised (the plan's scheme and training-set
    statistics; without a plan, the manifest's per-image settings) and moved to the plan's target
    spacing one at a time, so a large CT never holds more than one full-size float32 copy beside
    its inputs. Absent modalities get zeros in their channel (the network skips their branch).
    """
    import SimpleITK as sitk

    from MultiModalSegLib.data_plan import DataPlan
    from MultiModalSegLib.grid_checks import input_grid_warnings
    from MultiModalSegLib.plan_space import Grid, image_to_grid, network_grid
    from MultiModalSegLib.preprocessing import align_to_reference, normalize_intensity

    plan = DataPlan.from_manifest(package.manifest)
    reference_name = package.reference_modality
    if reference_name not in available:
        reference_name = available[0]
    present = {k: images[k] for k in available}
    aligned, _, report = align_to_reference(present, reference_name)
    reference = images[reference_name]
    reference_grid = Grid.of(reference)
    target_grid = network_grid(reference_grid, plan.target_spacing_xyz) if plan is not None else reference_grid
    volume = np.zeros((len(package.modalities),) + target_grid.shape, dtype=np.float32)
    for index, name in enumerate(package.modalities):
        if name not in aligned:
            continue
        if plan is not None:
            scheme, settings = plan.scheme(name), plan.settings(name)
        else:
            scheme, settings = _normalisation_for(package, name)
        normalised = normalize_intensity(sitk.GetArrayViewFromImage(aligned[name]), scheme, settings)
        del aligned[name]
        volume[index] = image_to_grid(normalised, reference_grid, target_grid)
        del normalised
    warnings = input_grid_warnings(present, reference_name, plan, target_grid.shape, package.patch_size,
                                   f"'{package.id}' v{package.version}")
    return PreparedInput(volume=volume, reference=reference, reference_name=reference_name, alignment=report,
                         reference_grid=reference_grid, network_grid=target_grid, plan=plan, warnings=warnings)


def mirrored(forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], axes: tuple[int, ...]
             ) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """Test-time mirroring: ``forward`` averaged over every combination of flips along ``axes`` (0 z, 1 y, 2 x).

    Each output is flipped back before averaging, so 3 axes cost 8 forward passes (nnU-Net's TTA).
    """
    import itertools

    combinations = [combo for count in range(len(axes) + 1) for combo in itertools.combinations(axes, count)]

    def averaged(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        total: dict[str, torch.Tensor] = {}
        for combo in combinations:
            dims = [axis + 2 for axis in combo]
            out = forward(batch.flip(dims) if dims else batch)
            for name, tensor in out.items():
                tensor = tensor.flip(dims) if dims else tensor
                total[name] = total[name] + tensor if name in total else tensor.clone()
        return {name: tensor / len(combinations) for name, tensor in total.items()}

    return averaged


def _forward_function(network: torch.nn.Module, package: ModelPackage, available: list[str], device: str
                      ) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """Wrap the network so each window yields probabilities, overlays and uncertainty."""
    import torch

    from MultiModalSegLib.levelset import heaviside

    use_amp = device.startswith("cuda")

    def maml_forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            out = network(batch, available=available)
        joint = torch.softmax(out["joint"].float(), dim=1)
        branch_probs = [torch.softmax(out["branches"][name].float(), dim=1) for name in available]
        # Total-variation distance between each branch and the joint output, averaged over
        # the branches: 0 where all agree, up to 1 where they predict different classes.
        disagreement = torch.stack([0.5 * (p - joint).abs().sum(dim=1) for p in branch_probs]).mean(dim=0)
        attention = torch.stack([out["attention"][name].float().mean(dim=1) for name in available], dim=1)
        return {"probabilities": joint, "attention": attention, "uncertainty": disagreement[:, None]}

    from_level_set = dtc_segmentation_output(package) == "level_set"

    def dtc_forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            seg_logits, level_set = network(batch)
        segmentation = torch.sigmoid(seg_logits.float())
        level_set = level_set.float()
        from_level_set_map = heaviside(level_set)
        inconsistency = (segmentation - from_level_set_map).abs().amax(dim=1, keepdim=True)
        # DTC's "LSF" ablation has no trained segmentation head: its label is H(level set) > 0.5,
        # i.e. level set < 0
        probabilities = from_level_set_map if from_level_set else segmentation
        return {"probabilities": probabilities, "level_set": level_set, "uncertainty": inconsistency}

    def unet_forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        # the U-Net baselines (models/fusion_unet.py): softmax only; no branches to disagree,
        # so the uncertainty is the normalised entropy of the softmax (0 certain, 1 uniform)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            out = network(batch, available=available)
        probabilities = torch.softmax(out["joint"].float(), dim=1)
        entropy = -(probabilities * torch.log(probabilities.clamp_min(1e-8))).sum(dim=1, keepdim=True)
        return {"probabilities": probabilities, "uncertainty": entropy / math.log(probabilities.shape[1])}

    if package.method == "maml":
        return maml_forward
    return unet_forward if package.method == "unet" else dtc_forward


DTC_SEGMENTATION_OUTPUTS = ("segmentation", "level_set")


def dtc_segmentation_output(package: ModelPackage) -> str:
    """Which DTC head gives the label: the manifest's ``segmentation_output`` (default ``segmentation``).

    ``level_set``: packages trained as DTC Table 2's "LSF" row, whose segmentation head was
    never trained; the label is ``heaviside(level set) > 0.5``, i.e. ``level set < 0``.
    """
    value = package.manifest.get("segmentation_output", "segmentation")
    if value not in DTC_SEGMENTATION_OUTPUTS:
        raise MultiModalSegError(
            f"Model '{package.id}' names segmentation_output '{value}' in its manifest; it must be one of "
            f"{', '.join(DTC_SEGMENTATION_OUTPUTS)}. Fix manifest.json or train the package again.")
    return value


def probabilities_to_labels(probabilities: np.ndarray, method: str) -> np.ndarray:
    """Class indices ``[z, y, x]`` uint8 from blended probabilities.

    MAML and the U-Net baselines: argmax over ``[K, ...]`` softmax channels (0 = background).
    DTC: one sigmoid channel per foreground class; a voxel is foreground where its best class
    exceeds 0.5. Runs class by class (ties go to the lower class, as ``np.argmax``) so a
    full-size CT needs one extra channel of memory, not an int64 index volume.
    """
    from MultiModalSegLib.weights import SOFTMAX_METHODS

    best = np.array(probabilities[0], dtype=np.float32)
    labels = np.zeros(best.shape, dtype=np.uint8)
    for index in range(1, probabilities.shape[0]):
        channel = probabilities[index]
        wins = channel > best
        labels[wins] = index
        np.copyto(best, channel, where=wins)
    if method in SOFTMAX_METHODS:
        return labels
    return np.where(best > 0.5, labels + 1, 0).astype(np.uint8)


def largest_component_classes(package: ModelPackage, plan: DataPlan | None, largest_component: bool | None
                              ) -> list[int]:
    """Class indices to reduce to their largest component: the plan's choice, all (True) or none (False)."""
    names = [label["name"] for label in package.labels]
    if largest_component is None:
        chosen = set(plan.largest_component_labels) if plan is not None else set()
        return [index for index, name in enumerate(names, start=1) if name in chosen]
    return list(range(1, len(names) + 1)) if largest_component else []


def predict(
    model_package: ModelPackage | str | Path,
    images: dict[str, sitk.Image],
    device: str = "auto",
    overlap: float = 0.5,
    batch_size: int = 2,
    largest_component: bool | None = None,
    progress: ProgressCallback | None = None,
    network: torch.nn.Module | None = None,
    tta: bool = False,
) -> PredictionResult:
    """Segment one case.

    Args:
        model_package: a loaded package, a package folder or a model id.
        images: ``{modality name: SimpleITK image}``; MAML models accept any non-empty
            subset of their modalities (missing ones are left out of the fusion).
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda[:N]``; AMP is used on CUDA.
        overlap: sliding-window overlap fraction (nnU-Net: 0.5).
        batch_size: windows per forward pass (2: on CPU PyTorch's fast oneDNN convolution
            needs a batch > 1, see ``sliding_window_predict``).
        largest_component: None (default): keep the largest connected component of the labels
            the package's plan chose on validation; True: of every label; False: of none.
        progress: called with ``(windows_done, windows_total)``.
        network: an already built network for this package (skips loading; used by
            training's validation and by benchmarks).
        tta: test-time mirroring (the average over flips along the axes the model was trained
            to be mirror-invariant to: 4-8 forward passes per window).

    Returns:
        A :class:`PredictionResult` on the reference image's grid.
    """
    import torch

    from MultiModalSegLib.plan_space import channels_to_grid
    from MultiModalSegLib.postprocessing import keep_largest_component
    from MultiModalSegLib.sliding_window import sliding_window_predict
    from MultiModalSegLib.weights import SOFTMAX_METHODS, ModelPackage, load_model_package

    started = time.perf_counter()
    package = model_package if isinstance(model_package, ModelPackage) else load_model_package(model_package)
    available = _check_inputs(package, images)
    device = resolve_device(device)
    prepared = prepare_input_volume(package, images, available)
    if network is None:
        network = package.build_network(device)
    network.eval()
    ready = time.perf_counter()
    forward = _forward_function(network, package, available, device)
    mirror_axes = tta_mirror_axes(package, prepared.plan) if tta else ()
    if mirror_axes:
        forward = mirrored(forward, mirror_axes)
    outputs, stats = sliding_window_predict(
        prepared.volume, forward, package.patch_size,
        overlap=overlap, batch_size=batch_size, device=device, progress=progress)
    prepared.volume = np.zeros((0,), dtype=np.float32)  # free the input stack before the outputs grow
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    inferred = time.perf_counter()

    # every map back onto the reference grid (linear), then the label there, as nnU-Net does
    outputs = {name: channels_to_grid(maps, prepared.network_grid, prepared.reference_grid)
               for name, maps in outputs.items()}
    labels = package.labels
    probabilities = outputs["probabilities"]
    class_indices = probabilities_to_labels(probabilities, package.method)
    cleaned = largest_component_classes(package, prepared.plan, largest_component)
    if cleaned:
        class_indices = keep_largest_component(class_indices, cleaned)
    values = np.array([0] + [int(label["value"]) for label in labels], dtype=np.uint8)
    labelmap = values[class_indices]
    offset = 1 if package.method in SOFTMAX_METHODS else 0
    probability_maps = {label["name"]: probabilities[i + offset] for i, label in enumerate(labels)}
    attention = {name: outputs["attention"][i] for i, name in enumerate(available)} if "attention" in outputs else {}
    level_set = ({label["name"]: outputs["level_set"][i] for i, label in enumerate(labels)}
                 if "level_set" in outputs else {})
    finished = time.perf_counter()
    resampled = prepared.network_grid != prepared.reference_grid
    return PredictionResult(
        reference=prepared.reference,
        reference_modality=prepared.reference_name,
        available=available,
        labelmap=labelmap,
        probabilities=probability_maps,
        attention=attention,
        level_set=level_set,
        uncertainty=outputs["uncertainty"][0],
        labels=labels,
        model={"id": package.id, "version": package.version, "method": package.method,
               "folder": str(package.folder)},
        alignment=prepared.alignment,
        timing={"device": device, "windows": stats.windows, "forward_batches": stats.batches,
                "tta_passes": 2 ** len(mirror_axes),
                "preprocessing_s": round(ready - started, 3), "inference_s": round(inferred - ready, 3),
                "postprocessing_s": round(finished - inferred, 3), "total_s": round(finished - started, 3)},
        grids={"reference": prepared.reference_grid.to_dict(), "network": prepared.network_grid.to_dict(),
               "resampled": resampled, "plan": prepared.plan is not None},
        warnings=list(prepared.warnings),
        postprocessing={"largest_component": [labels[i - 1]["name"] for i in cleaned],
                        "source": "plan" if largest_component is None else "requested"},
    )


def tta_mirror_axes(package: ModelPackage, plan: DataPlan | None) -> tuple[int, ...]:
    """Axes (0 z, 1 y, 2 x) a model may be mirrored along at test time: the ones its training mirrored.

    The plan records them (``mirror_axes``); without it: every axis for MAML and the U-Nets
    (nnU-Net's training mirrors all three), the in-plane axes for DTC (its RandomRotFlip flips y or x).
    """
    if plan is not None and plan.mirror_axes is not None:
        return tuple(plan.mirror_axes)
    from MultiModalSegLib.weights import SOFTMAX_METHODS

    return (0, 1, 2) if package.method in SOFTMAX_METHODS else (1, 2)
