"""Realistic synthetic cases (phantoms): the training and test data of the project.

No real two-phase liver CT, BraTS, LA or Pancreas-CT data can be had here, so the bundled
models are trained on these. Each kind draws a whole random patient from a seed with
numpy + scipy (no torch): anatomy with textures, partial-volume blur, noise, bias fields
and (for two-phase CT) misregistration, so that a threshold cannot solve the task but a
network can learn it.

``make_case(kind, seed, **options)`` returns ``{"images": {modality: sitk.Image},
"label": sitk.Image, "meta": {...}}``: float32 images and a uint8 label on one grid
(identity direction, LPS), ``meta`` a JSON-friendly record of what was drawn.

Options every kind takes:

* ``shape``: array size ``(z, y, x)``; the field of view is kept, so the spacing scales
  (a small ``(24, 48, 48)`` case still holds the whole anatomy).
* ``spacing``: voxel size ``(z, y, x)`` in mm (overrides the field-of-view rule).
* ``appearance``: ``"standard"`` or ``"shifted"`` (another contrast timing / protocol,
  enhancement levels, noise and blur: a domain shift for fine-tuning tests). The anatomy
  and label of a seed do not change with the appearance.
* ``tissue_map``: also return ``case["tissue"]`` (uint8 tissue codes, names in
  ``meta["tissue_names"]``): ground truth for every tissue.

The anatomy of a seed is the same at every ``shape`` (its random parameters come from
their own generator); only textures and noise differ.

Kind-specific options are documented on each kind's ``make`` (``liver-ct2``: ``lesions``,
``lesion_types``, ``misregistration``; ``brain-mr4``: ``tumor_type``, ``skull_stripped``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.phantoms import atrium_mr, brain_mr4, liver_ct2, pancreas_ct
from MultiModalSegLib.phantoms.kind import APPEARANCES, PhantomKind

_MAKERS: dict[str, Callable[..., dict]] = {
    liver_ct2.INFO.name: liver_ct2.make,
    brain_mr4.INFO.name: brain_mr4.make,
    atrium_mr.INFO.name: atrium_mr.make,
    pancreas_ct.INFO.name: pancreas_ct.make,
}

PHANTOM_KINDS: dict[str, PhantomKind] = {
    info.name: info for info in (liver_ct2.INFO, brain_mr4.INFO, atrium_mr.INFO, pancreas_ct.INFO)
}

MIN_SIZE = 8


def make_case(kind: str, seed: int, **options: Any) -> dict:
    """Draw one case of ``kind`` from ``seed`` (same kind, seed and options: identical
    arrays). Raises MultiModalSegError for an unknown kind, option or bad value."""
    if kind not in _MAKERS:
        raise MultiModalSegError(f"Unknown phantom kind {kind!r}; use one of {', '.join(PHANTOM_KINDS)}.")
    maker = _MAKERS[kind]
    accepted = [name for name, p in inspect.signature(maker).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise MultiModalSegError(
            f"Phantom kind {kind!r} has no option {', '.join(map(repr, unknown))}; its options are {', '.join(accepted)}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MultiModalSegError(f"The phantom seed must be a non-negative integer, got {seed!r}.")
    appearance = options.get("appearance", "standard")
    if appearance not in APPEARANCES:
        raise MultiModalSegError(f"Unknown appearance {appearance!r}; use one of {', '.join(APPEARANCES)}.")
    for name in ("shape", "spacing"):
        value = options.get(name)
        if value is None:
            continue
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 3 or any(v <= 0 for v in numbers):
            raise MultiModalSegError(f"{name} must be three positive numbers (z, y, x), got {value!r}.")
        if name == "shape":
            if any(v != int(v) or v < MIN_SIZE for v in numbers):
                raise MultiModalSegError(f"shape must be three integers of at least {MIN_SIZE} (z, y, x), got {value!r}.")
            options[name] = tuple(int(v) for v in numbers)
        else:
            options[name] = tuple(numbers)
    return maker(seed, **options)


__all__ = ["PHANTOM_KINDS", "PhantomKind", "make_case"]
