"""Intensity normalisation of one modality before it enters a network.

The schemes follow nnU-Net v1, which the MAML reference implementation forks
(``nnunet/preprocessing/preprocessing.py``):

* ``"ct"``: clip to the 0.5 and 99.5 percentiles of the foreground intensities, then
  z-score with the foreground mean and standard deviation. nnU-Net gathers the percentiles,
  mean and std once over the training set's foreground; a model package that recorded them
  (``clip``, ``mean``, ``std``) gets exactly those. Without them they are computed on this
  image's foreground: the given ``mask``, else the body, taken as voxels above -500 HU
  (air is about -1000 HU, fat about -100 HU, so -500 separates the patient from the air
  and table padding around them).
* ``"mr"``: z-score over the non-zero voxels; voxels outside that mask stay 0. This is
  nnU-Net's ``use_nonzero_mask_for_norm`` for skull-stripped BraTS-style MR and what the
  BraTS preprocessing does; MR intensities have no absolute scale, so statistics are always
  per image.
* ``"none"``: the values as they are, in float32.

Settings come from the model package manifest's ``preprocessing`` dict
(:meth:`NormalizationSettings.from_dict`), so training and inference normalise alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

NORMALIZATION_SCHEMES: tuple[str, ...] = ("ct", "mr", "none")
# Other spellings of the settings accepted in a manifest, nnU-Net's intensity property names included.
_MANIFEST_KEY_ALIASES = {
    "ct_clip": "clip",
    "clip_range": "clip",
    "percentile_00_5": "clip_lower",
    "percentile_99_5": "clip_upper",
    "sd": "std",
}


@dataclass
class NormalizationSettings:
    """How ``normalize_intensity`` scales intensities; defaults from nnU-Net v1 / the MAML seed."""

    # nnU-Net CTNormalization: percentile_00_5 and percentile_99_5 of the foreground voxels.
    ct_clip_percentiles: tuple[float, float] = (0.5, 99.5)
    # Foreground when no mask is given: voxels above this HU value (the body, not the air).
    # Not in nnU-Net, which has the label's foreground at planning time; -500 HU lies midway
    # between air (-1000) and fat (-100).
    ct_body_threshold_hu: float = -500.0
    # Fixed clip range [lo, hi] in HU gathered over the training set (nnU-Net's intensity
    # properties); None: the percentiles of this image's foreground.
    clip: tuple[float, float] | None = None
    # Fixed foreground mean and std after clipping, gathered over the training set; None:
    # this image's foreground statistics. Both or neither.
    mean: float | None = None
    std: float | None = None
    # Lower bound on the std so a constant image gives zeros, not NaN (nnU-Net uses 1e-8).
    epsilon: float = 1e-8

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> NormalizationSettings:
        """Settings from a manifest ``preprocessing`` dict; keys this class does not use are ignored.

        The manifest's dict also carries resampling keys (``target_spacing``...), so unknown keys
        are skipped; the known ones are checked and a wrong one raises MultiModalSegError.
        """
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise MultiModalSegError(
                f"The model package's preprocessing settings must be a JSON object, not {type(values).__name__}; "
                "fix its manifest.json.")
        known = {f.name for f in fields(cls)}
        chosen: dict[str, Any] = {}
        lower = upper = None
        for key, value in values.items():
            name = _MANIFEST_KEY_ALIASES.get(key, key)
            if name == "clip_lower":
                lower = value
            elif name == "clip_upper":
                upper = value
            elif name in known:
                chosen[name] = value
        if "clip" not in chosen and lower is not None and upper is not None:
            chosen["clip"] = (lower, upper)
        try:
            settings = cls(**chosen)
            settings._check()
        except (TypeError, ValueError) as error:
            raise MultiModalSegError(
                f"The model package's intensity normalisation settings are invalid ({error}); fix the "
                "'preprocessing' entry of its manifest.json.") from error
        return settings

    def _check(self) -> None:
        """Coerce to numbers and refuse inconsistent values (ValueError with the reason)."""
        self.ct_clip_percentiles = _pair(self.ct_clip_percentiles, "ct_clip_percentiles")
        lo, hi = self.ct_clip_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"ct_clip_percentiles must satisfy 0 <= lo < hi <= 100, got {lo}, {hi}")
        self.ct_body_threshold_hu = float(self.ct_body_threshold_hu)
        if self.clip is not None:
            self.clip = _pair(self.clip, "clip")
            if not self.clip[0] < self.clip[1]:
                raise ValueError(f"clip must be [lower, upper] with lower < upper, got {list(self.clip)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.mean is not None:
            self.mean, self.std = float(self.mean), float(self.std)
            if not (np.isfinite(self.mean) and np.isfinite(self.std) and self.std > 0):
                raise ValueError(f"std must be positive and both finite, got mean {self.mean}, std {self.std}")
        self.epsilon = float(self.epsilon)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict that ``from_dict`` reads back to equal settings."""
        values = asdict(self)
        values["ct_clip_percentiles"] = list(self.ct_clip_percentiles)
        values["clip"] = list(self.clip) if self.clip is not None else None
        return values


def _pair(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [lower, upper], got {value!r}") from None
    return lo, hi


def normalize_intensity(array: np.ndarray, scheme: str,
                        settings: NormalizationSettings | dict[str, Any] | None = None,
                        mask: np.ndarray | None = None) -> np.ndarray:
    """Return a new float32 array of ``array`` normalised by ``scheme`` (``ct``, ``mr``, ``none``).

    ``array`` is any numeric array (typically ``(z, y, x)``) and is not modified. ``mask``
    (same shape, truthy = foreground) replaces the default foreground: the body above
    ``ct_body_threshold_hu`` for CT, the non-zero voxels for MR. Statistics are computed in
    float64. A constant foreground (std 0) gives zeros there, never NaN.
    """
    scheme_name = str(scheme).lower()
    if scheme_name not in NORMALIZATION_SCHEMES:
        raise MultiModalSegError(
            f"Unknown intensity normalisation '{scheme}'; use one of {', '.join(NORMALIZATION_SCHEMES)}.")
    if not isinstance(settings, NormalizationSettings):
        settings = NormalizationSettings.from_dict(settings)
    array = np.asarray(array)
    if mask is not None:
        mask = np.asarray(mask).astype(bool, copy=False)
        if mask.shape != array.shape:
            raise MultiModalSegError(
                f"The foreground mask has shape {mask.shape} but the image has {array.shape}; give a mask on "
                "the image's grid.")
    if scheme_name == "none" or array.size == 0:
        return array.astype(np.float32, copy=True)
    if scheme_name == "ct":
        return _normalize_ct(array, settings, mask)
    return _normalize_mr(array, settings, mask)


def _normalize_ct(array: np.ndarray, settings: NormalizationSettings, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        mask = array > settings.ct_body_threshold_hu
    foreground = array[mask] if mask.any() else array.reshape(-1)  # no body at all: use every voxel
    if settings.clip is not None:
        lower, upper = settings.clip
    else:
        lower, upper = (float(v) for v in np.percentile(foreground, settings.ct_clip_percentiles))
    clipped = array.astype(np.float32, copy=True)
    np.clip(clipped, np.float32(lower), np.float32(upper), out=clipped)
    if settings.mean is not None:
        mean, std = settings.mean, settings.std
    else:
        clipped_foreground = np.clip(foreground.astype(np.float64), lower, upper)
        mean, std = float(clipped_foreground.mean()), float(clipped_foreground.std())
    return _z_score(clipped, mean, std, settings.epsilon)


def _normalize_mr(array: np.ndarray, settings: NormalizationSettings, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        mask = array != 0
    output = np.zeros(array.shape, dtype=np.float32)
    if not mask.any():
        return output
    values = array[mask].astype(np.float64)
    output[mask] = _z_score(values.astype(np.float32), float(values.mean()), float(values.std()), settings.epsilon)
    return output


def _z_score(values: np.ndarray, mean: float, std: float, epsilon: float) -> np.ndarray:
    """``(values - mean) / std`` in float32; zeros when the values are constant (std ~ 0)."""
    if not std > max(epsilon, 1e-7 * abs(mean)):
        # Constant (to float precision): rounding would turn (x - mean) / epsilon into noise.
        return np.zeros(values.shape, dtype=np.float32)
    result = values.astype(np.float32, copy=True)
    result -= np.float32(mean)
    result /= np.float32(std)
    return result
