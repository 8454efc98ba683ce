"""The sigmoid-shaped ramp-up that DTC uses to switch its consistency loss on gradually.

Early in training the level-set head and the segmentation head are both poor, so making
them agree would only teach them to agree on noise. DTC therefore weights the
consistency term with ``w(t) = w_max * exp(-5 (1 - t/T)^2)`` (Laine & Aila 2017,
"Temporal Ensembling", the "Gaussian warm-up"), which grows from ``w_max * e^-5``
(0.0067 w_max) at t = 0 to ``w_max`` at t = T and stays there.
"""

from __future__ import annotations

import math

__all__ = ["sigmoid_rampup"]


def sigmoid_rampup(current: float, rampup_length: float) -> float:
    """Ramp-up factor ``exp(-5 (1 - t/T)^2)`` in (0, 1], with t clipped to [0, T].

    Same contract as ``ramps.sigmoid_rampup`` in the DTC reference: a ramp length of 0
    means "no ramp" and returns 1.0.

    Args:
        current: training progress t (iterations, or epochs: the same unit as the length).
        rampup_length: T, where the factor reaches 1.

    Returns:
        e^-5 = 0.00674 at t <= 0, e^-1.25 = 0.2865 at t = T/2, 1.0 at t >= T.
    """
    if rampup_length < 0:
        raise ValueError(f"rampup_length must be >= 0, got {rampup_length}.")
    if rampup_length == 0:
        return 1.0
    progress = min(max(float(current), 0.0), float(rampup_length)) / float(rampup_length)
    phase = 1.0 - progress
    return float(math.exp(-5.0 * phase * phase))
