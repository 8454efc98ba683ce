"""Tests of the PNG montage helpers (MultiModalSegLib.montage): layout and size, label
outlines, heat-map overlay, windowing, radiological orientation and the case montage."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.montage import (
    MontagePanel,
    axial_slice,
    case_montage,
    largest_label_slice,
    save_montage,
    window_to_gray,
)
from MultiModalSegLib.phantoms import PHANTOM_KINDS, make_case

GREEN = (0, 255, 0)


def ramp(rows: int = 32, cols: int = 32) -> np.ndarray:
    return np.add.outer(np.arange(rows), np.arange(cols)).astype(np.float32)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_montage_size_follows_columns_panel_size_and_titles(tmp_path):
    panels = [MontagePanel(ramp(), title=f"panel {i}") for i in range(3)]
    path = save_montage(panels, tmp_path / "m.png", columns=2, panel_size=64, title_height=18)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (2 * 64, 2 * (18 + 64))
    pixels = read(path)
    assert pixels[:18, :64].max() > 200  # white title text in the first strip
    assert pixels[18 + 64 : 2 * 18 + 64, 64:].max() == 0  # the empty fourth cell stays black


def test_outline_colour_on_the_label_boundary_only(tmp_path):
    label = np.zeros((32, 32), np.uint8)
    label[8:24, 8:24] = 2
    panel = MontagePanel(ramp(), label=label, label_colors={2: GREEN})
    pixels = read(save_montage([panel], tmp_path / "m.png", panel_size=64, title_height=0))
    # 32 -> 64 pixels: the square covers rows/cols 16..47 of the picture.
    for row, col in [(16, 30), (47, 30), (30, 16), (30, 47)]:
        assert tuple(pixels[row, col]) == GREEN
    for row, col in [(30, 30), (10, 30), (53, 30)]:
        assert tuple(pixels[row, col]) != GREEN
        assert pixels[row, col, 0] == pixels[row, col, 1] == pixels[row, col, 2]  # plain gray


def test_heat_map_coloured_above_threshold_and_transparent_below(tmp_path):
    image = np.full((32, 32), 100.0, np.float32)
    heat = np.zeros((32, 32), np.float32)
    heat[4:28, 4:14] = 1.0  # hot block: yellow at full opacity
    heat[4:28, 18:28] = 0.3  # below the threshold: not drawn
    panel = MontagePanel(image, window=(100.0, 200.0), heat=heat, heat_threshold=0.5, heat_opacity=1.0)
    pixels = read(save_montage([panel], tmp_path / "m.png", panel_size=64, title_height=0))
    inside, below = pixels[32, 18], pixels[32, 46]
    assert inside[0] == 255 and inside[1] == 255 and inside[2] < 10
    assert below[0] == below[1] == below[2] == 128

    half = MontagePanel(image, window=(100.0, 200.0), heat=heat, heat_threshold=0.5, heat_opacity=0.5)
    mixed = read(save_montage([half], tmp_path / "h.png", panel_size=64, title_height=0))[32, 18]
    np.testing.assert_allclose(mixed, [(128 + 255) / 2, (128 + 255) / 2, 64], atol=2)


def test_window_level_maps_to_mid_gray_and_percentiles_stretch():
    image = np.array([[0.0, 40.0, 80.0]], np.float32)
    np.testing.assert_array_equal(window_to_gray(image, (40.0, 80.0), (0, 100)), [[0, 128, 255]])
    np.testing.assert_array_equal(window_to_gray(image, None, (0, 100)), [[0, 128, 255]])


def test_anisotropic_pixels_keep_their_aspect(tmp_path):
    panel = MontagePanel(np.ones((10, 40), np.float32), pixel_spacing=(4.0, 1.0), window=(0.5, 1.0))
    pixels = read(save_montage([panel], tmp_path / "m.png", panel_size=80, title_height=0))
    bright_rows = np.nonzero(pixels[:, 40, 0] > 200)[0]
    assert len(bright_rows) == 80  # 40 mm x 40 mm: a square picture


def _oriented_image(direction: tuple) -> sitk.Image:
    """A 1-slice image whose patient-right column and anterior row are bright."""
    image = sitk.Image(8, 6, 1, sitk.sitkFloat32)
    image.SetDirection(direction)
    array = np.zeros((1, 6, 8), np.float32)
    x_to_left, y_to_posterior = direction[0] > 0, direction[4] > 0
    array[0, :, 0 if x_to_left else -1] += 1.0  # patient right
    array[0, 0 if y_to_posterior else -1, :] += 2.0  # anterior
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize(
    "direction",
    [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, -1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)],
)
def test_axial_slice_is_radiological_whatever_the_direction(direction):
    pixels, spacing = axial_slice(_oriented_image(direction), 0)
    assert pixels.shape == (6, 8)
    assert (pixels[:, 0] >= 1).all() and (pixels[1:, -1] == 0).all()  # patient right on screen left
    assert (pixels[0] >= 2).all() and (pixels[-1, 1:] == 0).all()  # anterior up
    assert spacing == (1.0, 1.0)


@pytest.mark.parametrize("kind", ["liver-ct2", "brain-mr4"])
def test_case_montage_draws_every_modality_with_the_kind_colours(tmp_path, kind):
    case = make_case(kind, 0, shape=(24, 48, 48))
    label = sitk.GetArrayFromImage(case["label"])
    top = label.max()
    chosen = largest_label_slice(case["label"])
    assert (label[chosen] == top).sum() == (label == top).sum(axis=(1, 2)).max()
    path = case_montage(case, tmp_path / f"{kind}.png", panel_size=96)
    pixels = read(path)
    modalities = PHANTOM_KINDS[kind].modalities
    assert pixels.shape[1] == 96 * len(modalities)
    colour = PHANTOM_KINDS[kind].label_colors[int(top)]
    for i in range(len(modalities)):
        cell = pixels[:, i * 96 : (i + 1) * 96]
        assert (cell == colour).all(axis=2).any(), f"no outline of label {top} in panel {i}"


def test_user_errors_say_what_to_do(tmp_path):
    with pytest.raises(MultiModalSegError, match="at least one panel"):
        save_montage([], tmp_path / "m.png")
    with pytest.raises(MultiModalSegError, match="same size"):
        save_montage([MontagePanel(ramp(), label=np.zeros((4, 4)))], tmp_path / "m.png")
    with pytest.raises(MultiModalSegError, match="2D"):
        save_montage([MontagePanel(np.zeros((2, 3, 4)))], tmp_path / "m.png")
    with pytest.raises(MultiModalSegError, match="outside"):
        axial_slice(_oriented_image((1, 0, 0, 0, 1, 0, 0, 0, 1)), 3)
