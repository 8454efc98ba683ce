"""Sliding-window blending: exact on identity and position-dependent forwards, any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MultiModalSegLib.sliding_window import (
    gaussian_importance_map,
    iterate_windows,
    sliding_window_predict,
    window_starts,
)


def test_window_starts_cover_the_axis_with_the_requested_stride():
    assert window_starts(10, 16, 0.5) == [0]
    assert window_starts(16, 16, 0.5) == [0]
    starts = window_starts(100, 32, 0.5)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert max(b - a for a, b in zip(starts, starts[1:])) <= 16
    assert window_starts(64, 32, 0.0) == [0, 32]
    with pytest.raises(ValueError):
        window_starts(64, 32, 1.0)


def test_gaussian_importance_map_peaks_in_the_centre_and_has_no_zeros():
    weights = gaussian_importance_map((8, 16, 16))
    assert weights.shape == (8, 16, 16)
    assert weights.max() == pytest.approx(1.0)
    assert weights[4, 8, 8] == weights.max()
    assert weights.min() > 0
    assert weights[0, 0, 0] < weights[4, 8, 8]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
@pytest.mark.parametrize("shape", [(37, 29, 41), (8, 40, 40), (5, 7, 9)])
def test_identity_forward_reproduces_the_volume(shape, batch_size):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(2,) + shape).astype(np.float32)
    calls = []

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(batch.shape[0])
        return {"copy": batch, "first": batch[:, :1] * 2}

    progress = []
    outputs, stats = sliding_window_predict(volume, forward, (8, 16, 16), overlap=0.5, batch_size=batch_size,
                                            output_dtype=np.float32, progress=lambda d, t: progress.append((d, t)))
    assert outputs["copy"].shape == volume.shape
    np.testing.assert_allclose(outputs["copy"], volume, atol=1e-5)
    np.testing.assert_allclose(outputs["first"][0], 2 * volume[0], atol=1e-5)
    # On CPU a batch smaller than 2 is padded with a copy (see minimum_batch).
    padding = sum(max(0, 2 - min(batch_size, stats.windows - i)) for i in range(0, stats.windows, batch_size))
    assert sum(calls) == stats.windows + padding
    assert progress[-1] == (stats.windows, stats.windows)
    expected_windows = len(list(iterate_windows(stats.padded_shape, (8, 16, 16), 0.5)))
    assert stats.windows == expected_windows


def test_blending_weights_windows_by_their_gaussian():
    """A forward whose output depends on the window position blends to the weighted mean."""
    volume = np.zeros((1, 24, 16, 16), dtype=np.float32)
    volume[0] = np.arange(24, dtype=np.float32)[:, None, None]
    patch = (16, 16, 16)

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        # Each window outputs a constant: the z index of its first slice.
        first = batch[:, :1, :1, :1, :1]
        return {"start": first.expand(-1, 1, *patch).clone()}

    outputs, stats = sliding_window_predict(volume, forward, patch, overlap=0.5, output_dtype=np.float32)
    starts = window_starts(24, 16, 0.5)
    assert stats.windows == len(starts) == 2
    weights = gaussian_importance_map(patch)
    z = 12  # covered by both windows (starts 0 and 8)
    w0 = weights[z - starts[0], 8, 8]
    w1 = weights[z - starts[1], 8, 8]
    expected = (w0 * starts[0] + w1 * starts[1]) / (w0 + w1)
    assert outputs["start"][0, z, 8, 8] == pytest.approx(expected, rel=1e-5)
    assert outputs["start"][0, 2, 8, 8] == pytest.approx(0.0)
    assert outputs["start"][0, 22, 8, 8] == pytest.approx(8.0)


def test_float16_outputs_halve_memory():
    volume = np.ones((1, 10, 10, 10), dtype=np.float32)
    outputs, _ = sliding_window_predict(volume, lambda b: {"x": b}, (8, 8, 8))
    assert outputs["x"].dtype == np.float16
    np.testing.assert_allclose(outputs["x"].astype(np.float32), 1.0, atol=1e-3)


def test_padding_small_batches_changes_nothing_but_the_batch_size():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(1, 20, 30, 30)).astype(np.float32)
    seen = []

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(batch.shape[0])
        return {"square": batch ** 2}

    padded, stats = sliding_window_predict(volume, forward, (8, 16, 16), batch_size=1, minimum_batch=2,
                                           output_dtype=np.float32)
    assert set(seen) == {2} and len(seen) == stats.windows
    seen.clear()
    plain, _ = sliding_window_predict(volume, forward, (8, 16, 16), batch_size=1, minimum_batch=1,
                                      output_dtype=np.float32)
    assert set(seen) == {1}
    np.testing.assert_array_equal(padded["square"], plain["square"])
