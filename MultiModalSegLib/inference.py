"""``predict``: a model package + named modality images -> label map, probabilities, overlays.

The steps, each explained where it happens:

1. check the inputs against the manifest (known modality names, at least one present,
   all present unless the model handles missing modalities, 3D, finite voxels);
2. bring every modality onto the reference modality's grid (``preprocessing.align_to_reference``)
   and normalise each as the manifest says;
3. run the network over Gaussian-blended sliding windows (AMP on CUDA);
4. turn the blended maps into a label map (argmax for MAML's softmax; one-vs-rest
   sigmoid > 0.5 for DTC), optionally keep only the largest component of each label;
5. return everything on the reference image's exact grid (origin, spacing, direction), so
   the outputs overlay the inputs in Slicer.

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

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk
    import torch

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
    entry = next(m for m in package.manifest["modalities"] if m["name"] == modality)
    scheme = entry.get("normalization", "none")
    per_modality = package.manifest.get("preprocessing", {}).get("normalization", {})
    settings = per_modality.get(modality) if isinstance(per_modality, dict) else None
    if settings is None:
        settings = {k: v for k, v in package.manifest.get("preprocessing", {}).items() if k != "normalization"}
    return scheme, settings


def prepare_input_volume(package: ModelPackage, images: dict[str, sitk.Image], available: list[str]
                         ) -> tuple[np.ndarray, sitk.Image, str, list[dict[str, Any]]]:
    """Align and normalise the available modalities into ``[M, z, y, x]`` float32.

    Absent modalities get zeros in their channel (the network skips their branch).
    Returns the stack, the reference image, its modality name and the alignment report.
    """
    import SimpleITK as sitk

    from MultiModalSegLib.preprocessing import align_to_reference, normalize_intensity

    reference_name = package.reference_modality
    if reference_name not in available:
        reference_name = available[0]
    aligned, _, report = align_to_reference({k: images[k] for k in available}, reference_name)
    reference = images[reference_name]
    shape = tuple(reversed(reference.GetSize()))
    volume = np.zeros((len(package.modalities),) + shape, dtype=np.float32)
    for index, name in enumerate(package.modalities):
        if name not in aligned:
            continue
        scheme, settings = _normalisation_for(package, name)
        array = sitk.GetArrayViewFromImage(aligned[name])
        volume[index] = normalize_intensity(array, scheme, settings)
        del aligned[name]
    return volume, reference, reference_name, report


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
    exceeds 0.5.
    """
    from MultiModalSegLib.weights import SOFTMAX_METHODS

    if method in SOFTMAX_METHODS:
        return np.argmax(probabilities, axis=0).astype(np.uint8)
    best = np.argmax(probabilities, axis=0)
    best_probability = np.take_along_axis(probabilities, best[None], axis=0)[0]
    return np.where(best_probability > 0.5, best + 1, 0).astype(np.uint8)


def keep_largest_component(class_indices: np.ndarray, num_foreground: int) -> np.ndarray:
    """Keep, for each foreground class, only its largest 26-connected component."""
    from scipy import ndimage

    result = class_indices.copy()
    structure = np.ones((3, 3, 3), dtype=bool)
    for cls in range(1, num_foreground + 1):
        mask = class_indices == cls
        components, count = ndimage.label(mask, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[mask & (components != int(np.argmax(sizes)))] = 0
    return result


def predict(
    model_package: ModelPackage | str | Path,
    images: dict[str, sitk.Image],
    device: str = "auto",
    overlap: float = 0.5,
    batch_size: int = 2,
    largest_component: bool = False,
    progress: ProgressCallback | None = None,
    network: torch.nn.Module | None = None,
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
        largest_component: keep only the largest connected component of each label.
        progress: called with ``(windows_done, windows_total)``.
        network: an already built network for this package (skips loading; used by
            training's validation and by benchmarks).

    Returns:
        A :class:`PredictionResult` on the reference image's grid.
    """
    import torch

    from MultiModalSegLib.sliding_window import sliding_window_predict
    from MultiModalSegLib.weights import SOFTMAX_METHODS, ModelPackage, load_model_package

    started = time.perf_counter()
    package = model_package if isinstance(model_package, ModelPackage) else load_model_package(model_package)
    available = _check_inputs(package, images)
    device = resolve_device(device)
    volume, reference, reference_name, report = prepare_input_volume(package, images, available)
    if network is None:
        network = package.build_network(device)
    network.eval()
    prepared = time.perf_counter()
    outputs, stats = sliding_window_predict(
        volume, _forward_function(network, package, available, device), package.patch_size,
        overlap=overlap, batch_size=batch_size, device=device, progress=progress)
    del volume
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    inferred = time.perf_counter()

    labels = package.labels
    probabilities = outputs["probabilities"]
    class_indices = probabilities_to_labels(probabilities, package.method)
    if largest_component:
        class_indices = keep_largest_component(class_indices, len(labels))
    values = np.array([0] + [int(label["value"]) for label in labels], dtype=np.uint8)
    labelmap = values[class_indices]
    offset = 1 if package.method in SOFTMAX_METHODS else 0
    probability_maps = {label["name"]: probabilities[i + offset] for i, label in enumerate(labels)}
    attention = {name: outputs["attention"][i] for i, name in enumerate(available)} if "attention" in outputs else {}
    level_set = ({label["name"]: outputs["level_set"][i] for i, label in enumerate(labels)}
                 if "level_set" in outputs else {})
    finished = time.perf_counter()
    return PredictionResult(
        reference=reference,
        reference_modality=reference_name,
        available=available,
        labelmap=labelmap,
        probabilities=probability_maps,
        attention=attention,
        level_set=level_set,
        uncertainty=outputs["uncertainty"][0],
        labels=labels,
        model={"id": package.id, "version": package.version, "method": package.method,
               "folder": str(package.folder)},
        alignment=report,
        timing={"device": device, "windows": stats.windows, "forward_batches": stats.batches,
                "preprocessing_s": round(prepared - started, 3), "inference_s": round(inferred - prepared, 3),
                "postprocessing_s": round(finished - inferred, 3), "total_s": round(finished - started, 3)},
    )
