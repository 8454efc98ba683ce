"""Validation during training: sliding-window inference on whole held-out volumes, then Dice.

Each held-out case is a prepared (normalised, reference-grid) volume ``[M, z, y, x]`` with its
label ``[z, y, x]`` of class indices. The network runs over the whole volume with the project's
:func:`~MultiModalSegLib.sliding_window.sliding_window_predict` (Gaussian blending, the same code
``mmseg predict`` uses), probabilities become labels the way inference turns them
(:func:`~MultiModalSegLib.inference.probabilities_to_labels`: argmax for MAML's softmax,
one-vs-rest sigmoid > 0.5 for DTC), and :func:`MultiModalSegLib.metrics.dice` scores every
foreground class. The score that picks the best model is the mean foreground Dice over cases
and classes (nnU-Net's and DTC's model-selection metric is Dice too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from MultiModalSegLib.training.cancellation import CancellationToken


@dataclass
class ValidationVolume:
    """One held-out case as arrays: ``image`` ``[M, z, y, x]`` float32, ``label`` ``[z, y, x]`` ints."""

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float] | None = None


@dataclass
class ValidationResult:
    """Mean foreground Dice (the selection metric) and the details behind it."""

    iteration: int
    mean_dice: float
    dice_per_class: dict[str, float]
    cases: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "mean_dice": self.mean_dice, "dice_per_class": self.dice_per_class,
                "cases": self.cases, "seconds": round(self.seconds, 3)}


def probability_forward(module: torch.nn.Module, method: str, segmentation_output: str = "segmentation") -> Any:
    """A sliding-window forward that returns ``{"probabilities": [B, K, *patch]}``.

    MAML and the U-Net baselines: softmax of the joint logits (K includes background). DTC:
    sigmoid of the segmentation logits (one channel per foreground class), or with
    ``segmentation_output="level_set"`` (DTC Table 2's LSF row, whose segmentation head is not
    trained) the Heaviside of the level set, as :func:`~MultiModalSegLib.inference.predict` reads it.
    """
    import torch

    from MultiModalSegLib.levelset import heaviside
    from MultiModalSegLib.weights import SOFTMAX_METHODS

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if method in SOFTMAX_METHODS:
            return {"probabilities": torch.softmax(module(batch)["joint"].float(), dim=1)}
        seg_logits, level_set = module(batch)
        if segmentation_output == "level_set":
            return {"probabilities": heaviside(level_set.float())}
        return {"probabilities": torch.sigmoid(seg_logits.float())}

    return forward


def predict_labels(module: torch.nn.Module, method: str, image: np.ndarray, patch_size: tuple[int, int, int],
                   device: torch.device | str = "cpu", overlap: float = 0.5, batch_size: int = 2,
                   segmentation_output: str = "segmentation") -> np.ndarray:
    """Class indices ``[z, y, x]`` for one prepared volume ``[M, z, y, x]`` (module in eval mode)."""
    from MultiModalSegLib.inference import probabilities_to_labels
    from MultiModalSegLib.sliding_window import sliding_window_predict

    forward = probability_forward(module, method, segmentation_output)
    outputs, _ = sliding_window_predict(np.asarray(image, dtype=np.float32), forward, tuple(patch_size),
                                        overlap=overlap, batch_size=batch_size, device=device,
                                        output_dtype=np.float32)
    return probabilities_to_labels(outputs["probabilities"], method)


def validate_network(module: torch.nn.Module, method: str, volumes: list[ValidationVolume],
                     label_names: list[str], patch_size: tuple[int, int, int], iteration: int,
                     device: torch.device | str = "cpu", overlap: float = 0.5,
                     token: CancellationToken | None = None,
                     segmentation_output: str = "segmentation") -> ValidationResult:
    """Segment every held-out volume and score it; the module's train/eval mode is restored.

    ``segmentation_output``: the DTC head the label is read from (``DTCSettings.segmentation_output``:
    the level set for the LSF ablation), so the curve measures what the package will predict.

    ``label_names`` are the foreground labels in class-index order (class ``i + 1``).
    A class absent from both the prediction and the reference scores 1.0 (metrics.dice);
    classes absent from a case's reference are left out of that case's mean, so a case
    without tumour is not rewarded for predicting none.
    """
    import time

    from MultiModalSegLib.metrics import dice

    started = time.perf_counter()
    was_training = module.training
    module.eval()
    per_class: dict[str, list[float]] = {name: [] for name in label_names}
    cases = []
    try:
        for volume in volumes:
            if token is not None:
                token.check(iteration)
            prediction = predict_labels(module, method, volume.image, patch_size, device=device, overlap=overlap,
                                        segmentation_output=segmentation_output)
            scores: dict[str, float] = {}
            for index, name in enumerate(label_names, start=1):
                reference = volume.label == index
                if not reference.any():
                    continue
                scores[name] = float(dice(prediction == index, reference))
                per_class[name].append(scores[name])
            cases.append({"case": volume.name, "dice": scores,
                          "mean_dice": float(np.mean(list(scores.values()))) if scores else None})
    finally:
        module.train(was_training)
    dice_per_class = {name: float(np.mean(values)) for name, values in per_class.items() if values}
    mean_dice = float(np.mean(list(dice_per_class.values()))) if dice_per_class else float("nan")
    return ValidationResult(iteration=iteration, mean_dice=mean_dice, dice_per_class=dice_per_class, cases=cases,
                            seconds=time.perf_counter() - started)
