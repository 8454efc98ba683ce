"""Sliding-window inference with Gaussian blending, in z-bands to bound memory.

A volume larger than the network's patch is covered by overlapping windows (nnU-Net's
placement: the fewest windows whose stride is at most ``patch * (1 - overlap)``, spread
evenly from one border to the other). Each window's outputs are weighted by a Gaussian
importance map (centre voxels are trusted more than border voxels) and summed; the sum is
divided by the summed weights.

Memory: the windows are visited in z order, and only a band of ``patch_z`` slices of
float32 accumulators is kept (plus the z span of one batch). When the next row of windows starts at ``z1``, every slice
below ``z1`` is complete: it is normalised and stored in the (float16 or caller-chosen)
output arrays, and the band moves up. For a two-phase 512x512x200 CT this keeps the
accumulators at about a third of the full-volume size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

ForwardFunction = Callable[["torch.Tensor"], dict[str, "torch.Tensor"]]
"""Maps a batch of windows ``[B, C_in, *patch]`` to named outputs ``[B, C_k, *patch]``."""


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis (nnU-Net's ``compute_steps_for_sliding_window``).

    ``overlap`` is the fraction of the patch shared by neighbours (0.5 = stride of half a
    patch). The first window starts at 0 and the last ends at ``size``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size <= patch:
        return [0]
    target_stride = patch * (1.0 - overlap)
    steps = int(math.ceil((size - patch) / target_stride)) + 1
    actual_stride = (size - patch) / (steps - 1)
    return [int(round(actual_stride * i)) for i in range(steps)]


@lru_cache(maxsize=8)
def _gaussian_cached(patch_size: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch_size, dtype=np.float64)
    impulse[tuple(s // 2 for s in patch_size)] = 1.0
    weights = gaussian_filter(impulse, sigma=[s * sigma_scale for s in patch_size], mode="constant", cval=0.0)
    weights = weights / weights.max()
    # No zero weights: a voxel covered only by window borders must still get a prediction.
    weights = np.maximum(weights, weights[weights > 0].min())
    return weights.astype(np.float32)


def gaussian_importance_map(patch_size: tuple[int, ...], sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """Gaussian weights over a patch, max 1 at the centre, sigma = ``sigma_scale * patch`` (nnU-Net: 1/8)."""
    return _gaussian_cached(tuple(int(s) for s in patch_size), float(sigma_scale)).copy()


@dataclass
class SlidingWindowStats:
    """What one run did: number of windows and of forward calls, and the padded shape."""

    windows: int
    batches: int
    padded_shape: tuple[int, int, int]


def _pad_to_patch(volume: np.ndarray, patch: tuple[int, int, int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad ``[C, z, y, x]`` with zeros (symmetrically) so each spatial size is >= patch."""
    spatial = volume.shape[1:]
    pads = [(0, 0)]
    crop = [slice(None)]
    for size, p in zip(spatial, patch):
        missing = max(0, p - size)
        before = missing // 2
        pads.append((before, missing - before))
        crop.append(slice(before, before + size))
    if all(p == (0, 0) for p in pads):
        return volume, tuple(crop)
    return np.pad(volume, pads, mode="constant", constant_values=0.0), tuple(crop)


def iterate_windows(shape: tuple[int, int, int], patch: tuple[int, int, int], overlap: float) -> Iterator[tuple[int, int, int]]:
    """Window start corners in z-major order (the order the band accumulator needs)."""
    starts = [window_starts(s, p, overlap) for s, p in zip(shape, patch)]
    return iter(itertools.product(*starts))


def sliding_window_predict(
    volume: np.ndarray,
    forward: ForwardFunction,
    patch_size: tuple[int, int, int],
    overlap: float = 0.5,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    output_dtype: np.dtype | type = np.float16,
    progress: Callable[[int, int], None] | None = None,
    sigma_scale: float = 1.0 / 8,
    minimum_batch: int | None = None,
) -> tuple[dict[str, np.ndarray], SlidingWindowStats]:
    """Run ``forward`` over overlapping windows of ``volume`` and blend the outputs.

    Args:
        volume: ``[C_in, z, y, x]`` float32, already normalised.
        forward: maps a ``[B, C_in, *patch]`` tensor on ``device`` to a dict of
            ``[B, C_k, *patch]`` tensors (probabilities, attention, ...). It runs under
            ``torch.inference_mode``; autocast, if wanted, is the caller's.
        patch_size: window size in array order; the volume is zero-padded where smaller.
        overlap: fraction of a window shared with its neighbour (0.5 as nnU-Net).
        batch_size: windows per forward call.
        output_dtype: dtype of the returned arrays (float16 halves memory; blending itself
            is always done in float32).
        progress: called with ``(windows_done, windows_total)`` after each batch.
        minimum_batch: a smaller batch (the last one, or ``batch_size=1``) is padded with
            copies of its last window up to this size, and the copies' outputs dropped.
            Default 2 on CPU, 1 elsewhere: PyTorch's CPU convolution takes its oneDNN
            kernel only for a batch > 1 or a large ``N*C*D*H``, and the fallback is 4-20x
            slower for the 8-16-channel 3D layers of small networks (measured in
            docs/benchmarks.md), so two windows cost less than one.

    Returns:
        ``({name: [C_k, z, y, x]}, stats)``, each output blended with Gaussian weights and
        cropped back to the input's shape.
    """
    import torch

    if volume.ndim != 4:
        raise ValueError(f"volume must be [C, z, y, x], got shape {volume.shape}")
    patch = tuple(int(p) for p in patch_size)
    padded, crop = _pad_to_patch(np.asarray(volume, dtype=np.float32), patch)  # type: ignore[arg-type]
    shape = padded.shape[1:]
    corners = list(iterate_windows(shape, patch, overlap))  # type: ignore[arg-type]
    total = len(corners)
    weights_np = gaussian_importance_map(patch, sigma_scale)
    weights = torch.from_numpy(weights_np).to(device)
    if minimum_batch is None:
        minimum_batch = 2 if torch.device(device).type == "cpu" else 1
    pz = patch[0]
    # A batch may span several rows of z starts: the band must hold all of them.
    spans = [corners[min(i + batch_size, total) - 1][0] - corners[i][0] for i in range(0, total, batch_size)]
    band_length = pz + max(spans)

    outputs: dict[str, np.ndarray] = {}
    band: dict[str, np.ndarray] = {}
    band_weight = np.zeros((band_length,) + tuple(shape[1:]), dtype=np.float32)
    band_origin = 0

    def finalize(upto: int) -> None:
        """Normalise slices [band_origin, upto) into the outputs and shift the band."""
        nonlocal band_origin
        n = upto - band_origin
        if n <= 0:
            return
        norm = band_weight[:n]
        for name, acc in band.items():
            out = outputs[name]
            np.divide(acc[:, :n], norm[None], out=acc[:, :n])
            out[:, band_origin:upto] = acc[:, :n]
            acc[:, : band_length - n] = acc[:, n:].copy()
            acc[:, band_length - n:] = 0.0
        band_weight[: band_length - n] = band_weight[n:].copy()
        band_weight[band_length - n:] = 0.0
        band_origin = upto

    done = 0
    batches = 0
    with torch.inference_mode():
        for batch_start in range(0, total, batch_size):
            batch_corners = corners[batch_start: batch_start + batch_size]
            # Windows are z-sorted: everything below the first new z start is final.
            finalize(min(batch_corners[0][0], shape[0]))
            tiles = [padded[:, z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in batch_corners]
            tiles += [tiles[-1]] * max(0, minimum_batch - len(tiles))
            result = forward(torch.from_numpy(np.stack(tiles)).to(device))
            batches += 1
            for name, tensor in result.items():
                if name not in band:
                    channels = int(tensor.shape[1])
                    band[name] = np.zeros((channels, band_length) + tuple(shape[1:]), dtype=np.float32)
                    outputs[name] = np.zeros((channels,) + tuple(shape), dtype=output_dtype)
                weighted = (tensor.float() * weights).cpu().numpy()
                for i, (z, y, x) in enumerate(batch_corners):
                    dz = z - band_origin
                    band[name][:, dz:dz + patch[0], y:y + patch[1], x:x + patch[2]] += weighted[i]
            for z, y, x in batch_corners:
                dz = z - band_origin
                band_weight[dz:dz + patch[0], y:y + patch[1], x:x + patch[2]] += weights_np
            done += len(batch_corners)
            if progress is not None:
                progress(done, total)
    finalize(shape[0])
    cropped = {name: np.ascontiguousarray(array[crop]) for name, array in outputs.items()}
    return cropped, SlidingWindowStats(windows=total, batches=batches, padded_shape=tuple(shape))  # type: ignore[arg-type]
