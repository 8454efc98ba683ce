"""PNG montages of image slices with label outlines and heat maps (Pillow, no matplotlib).

Used by the demo, the README pictures and reports. A :class:`MontagePanel` holds one 2D
slice already in display orientation (rows top to bottom, columns left to right) plus
what to draw on it; :func:`save_montage` lays panels out in a grid under their titles.

Display convention: :func:`axial_slice` reorients a SimpleITK image to LPS with
``DICOMOrient`` (whatever its direction; permuted or flipped axes included) and takes an
axial slice, so the picture is radiological: patient right on the screen's left,
anterior at the top. It assumes the image's direction cosines describe the patient
frame correctly (ITK LPS); non-axis-aligned (oblique) directions are reoriented to the
closest axis order, not resampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from MultiModalSegLib.errors import MultiModalSegError

DEFAULT_LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    1: (60, 220, 60),
    2: (255, 50, 50),
    3: (70, 140, 255),
    4: (255, 220, 30),
    5: (220, 80, 255),
    6: (40, 230, 230),
}


@dataclass
class MontagePanel:
    """One picture of a montage.

    ``image``: 2D array in display orientation. Gray levels come from ``window``
    (level, width) if given, otherwise from the ``percentiles`` (low, high) of the image.
    ``label``: optional 2D integer map drawn as outlines, coloured by ``label_colors``
    (value -> RGB; DEFAULT_LABEL_COLORS for values not given).
    ``heat``: optional 2D map in [0, 1] drawn red (at ``heat_threshold``) to yellow
    (at 1) with ``heat_opacity``; values below the threshold stay transparent.
    ``pixel_spacing``: (row, column) spacing in mm, so anisotropic pixels keep their aspect.
    """

    image: np.ndarray
    title: str = ""
    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    label: np.ndarray | None = None
    label_colors: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    outline_width: int = 1
    heat: np.ndarray | None = None
    heat_threshold: float = 0.5
    heat_opacity: float = 0.5
    pixel_spacing: tuple[float, float] = (1.0, 1.0)


def window_to_gray(image: np.ndarray, window: tuple[float, float] | None, percentiles: tuple[float, float]) -> np.ndarray:
    """Map intensities to uint8 gray: ``window`` = (level, width), else percentiles."""
    values = np.asarray(image, dtype=np.float64)
    if window is not None:
        level, width = window
        low, high = level - width / 2.0, level + width / 2.0
    else:
        finite = values[np.isfinite(values)]
        low, high = (np.percentile(finite, percentiles) if finite.size else (0.0, 1.0))
    if high <= low:
        high = low + 1.0
    gray = (np.nan_to_num(values, nan=low) - low) / (high - low)
    return (np.clip(gray, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def heat_colors(values: np.ndarray, threshold: float) -> np.ndarray:
    """RGB (float, 0-255) of a red-to-yellow heat scale: red at ``threshold``, yellow at 1."""
    t = np.clip((values - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0)
    rgb = np.empty(values.shape + (3,), np.float64)
    rgb[..., 0] = 255.0
    rgb[..., 1] = 40.0 + 215.0 * t
    rgb[..., 2] = 20.0 * (1.0 - t)
    return rgb


def _display_size(panel: MontagePanel, panel_size: int) -> tuple[int, int]:
    """Width and height (pixels) of the slice inside a square cell, aspect kept."""
    rows, cols = panel.image.shape
    height_mm, width_mm = rows * panel.pixel_spacing[0], cols * panel.pixel_spacing[1]
    scale = panel_size / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def render_panel(panel: MontagePanel, panel_size: int = 256) -> Image.Image:
    """The panel's picture (RGB, ``panel_size`` square, slice centred on black)."""
    image = np.asarray(panel.image)
    if image.ndim != 2:
        raise MultiModalSegError(f"A montage panel needs a 2D slice, got an array of shape {image.shape}; pass one slice.")
    for name in ("label", "heat"):
        extra = getattr(panel, name)
        if extra is not None and np.shape(extra) != image.shape:
            raise MultiModalSegError(
                f"The panel's {name} has shape {np.shape(extra)} but its image has {image.shape}; pass slices of the same size."
            )
    width, height = _display_size(panel, panel_size)
    gray = Image.fromarray(window_to_gray(image, panel.window, panel.percentiles)).resize((width, height), Image.BILINEAR)
    rgb = np.repeat(np.asarray(gray, np.float64)[..., None], 3, axis=2)

    if panel.heat is not None:
        heat = np.asarray(Image.fromarray(np.asarray(panel.heat, np.float32)).resize((width, height), Image.BILINEAR))
        shown = heat >= panel.heat_threshold
        alpha = float(np.clip(panel.heat_opacity, 0.0, 1.0))
        rgb[shown] = (1.0 - alpha) * rgb[shown] + alpha * heat_colors(heat[shown], panel.heat_threshold)

    if panel.label is not None:
        label = np.asarray(Image.fromarray(np.asarray(panel.label, np.int32)).resize((width, height), Image.NEAREST))
        colors = {**DEFAULT_LABEL_COLORS, **panel.label_colors}
        for value in np.unique(label):
            if value == 0:
                continue
            mask = label == value
            inner = ndimage.binary_erosion(mask, iterations=max(1, panel.outline_width), border_value=0)
            color = colors.get(int(value), DEFAULT_LABEL_COLORS[1 + int(value) % len(DEFAULT_LABEL_COLORS)])
            rgb[mask & ~inner] = color

    cell = Image.new("RGB", (panel_size, panel_size), (0, 0, 0))
    cell.paste(Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)), ((panel_size - width) // 2, (panel_size - height) // 2))
    return cell


def save_montage(
    panels: list[MontagePanel],
    path: str | Path,
    columns: int | None = None,
    panel_size: int = 256,
    title_height: int = 18,
) -> Path:
    """Write the panels as one PNG, ``columns`` per row (default: all in one row).

    Each cell is ``panel_size`` wide and ``title_height + panel_size`` tall (title strip
    on top), so the image is ``columns * panel_size`` by ``rows * (title_height +
    panel_size)`` pixels. Returns the path written.
    """
    if not panels:
        raise MultiModalSegError("A montage needs at least one panel; pass a non-empty list.")
    columns = len(panels) if columns is None else int(columns)
    if columns < 1:
        raise MultiModalSegError(f"columns must be at least 1, got {columns}.")
    rows = math.ceil(len(panels) / columns)
    canvas = Image.new("RGB", (columns * panel_size, rows * (title_height + panel_size)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, panel in enumerate(panels):
        left, top = (i % columns) * panel_size, (i // columns) * (title_height + panel_size)
        canvas.paste(render_panel(panel, panel_size), (left, top + title_height))
        if panel.title:
            draw.text((left + 4, top + 3), panel.title, fill=(255, 255, 255), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def axial_slice(image: Any, index: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Axial slice ``index`` of a SimpleITK image, in radiological display orientation.

    The image is reoriented to LPS (rows anterior to posterior, columns patient right
    to left, slices inferior to superior), so ``index`` counts from the feet. Returns the
    2D array and its (row, column) pixel spacing in mm.
    """
    import SimpleITK as sitk

    oriented = sitk.DICOMOrient(image, "LPS")
    array = sitk.GetArrayViewFromImage(oriented)
    if not 0 <= index < array.shape[0]:
        raise MultiModalSegError(f"Slice {index} is outside the image's {array.shape[0]} axial slices; pick 0 to {array.shape[0] - 1}.")
    spacing = oriented.GetSpacing()
    return np.array(array[index]), (spacing[1], spacing[0])


def largest_label_slice(label: Any) -> int:
    """The axial slice (LPS order, as axial_slice counts) with the largest area of the
    highest label value present (the tumour in a liver or brain case); the middle slice
    of an empty label."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(sitk.DICOMOrient(label, "LPS"))
    values = np.unique(array)
    values = values[values != 0]
    if values.size == 0:
        return array.shape[0] // 2
    areas = (array == values.max()).sum(axis=(1, 2))
    return int(np.argmax(areas))


def case_montage(
    case: dict,
    path: str | Path,
    slice_index: int | None = None,
    label_colors: dict[int, tuple[int, int, int]] | None = None,
    panel_size: int = 256,
    columns: int | None = None,
    windows: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """A montage of a case (``{"images": {modality: sitk.Image}, "label": sitk.Image}``):
    one panel per modality with the label outlined, on the axial slice through the largest
    area of the highest label (or ``slice_index``). ``windows`` gives a (level, width)
    per modality; otherwise percentiles are used. Label colours default to the phantom
    kind's (``case["meta"]["kind"]``), else DEFAULT_LABEL_COLORS."""
    images = case["images"]
    label = case.get("label")
    if label_colors is None:
        from MultiModalSegLib.phantoms import PHANTOM_KINDS

        kind = PHANTOM_KINDS.get(str(case.get("meta", {}).get("kind")))
        label_colors = dict(kind.label_colors) if kind is not None else {}
    if slice_index is None:
        slice_index = largest_label_slice(label) if label is not None else None
    panels = []
    for name, image in images.items():
        index = slice_index if slice_index is not None else image.GetSize()[2] // 2
        pixels, spacing = axial_slice(image, index)
        label_pixels = axial_slice(label, index)[0] if label is not None else None
        panels.append(
            MontagePanel(
                image=pixels,
                title=f"{name}  z={index}",
                window=(windows or {}).get(name),
                label=label_pixels,
                label_colors=label_colors or {},
                pixel_spacing=spacing,
            )
        )
    return save_montage(panels, path, columns=columns, panel_size=panel_size)
