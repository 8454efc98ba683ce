"""Shared helpers of the training tests (no tests here): tiny configurations, tiny phantom specs, events.

The sizes keep every training test at a few seconds on a 2-core CPU: 16x32x32 phantoms, a
3-stage MAML of width 4, a DTC VNet of width 2, 2-4 iterations.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHAPE = "16x32x32"
PATCH = (16, 32, 32)
LIVER = f"phantom:liver-ct2:3:0?shape={SHAPE}"  # 3 labeled two-phase CT cases (2 train, 1 validation)
ATRIUM = f"phantom:atrium-mr:4:0?shape={SHAPE}"  # 4 single-modality MR cases


def tiny_config(method: str, **overrides: Any):
    """A few-second configuration of ``method`` on CPU."""
    from MultiModalSegLib.training.config import TrainingConfig

    defaults = {"iterations": 4, "patch_size": PATCH, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2,
                "device": "cpu", "seed": 7}
    defaults.update(overrides)
    config = TrainingConfig.for_method(method, **defaults)
    config.maml.base_filters = 4
    config.maml.depth = 3
    config.maml.max_filters = 16
    config.dtc.base_filters = 2
    config.validate()
    return config


class Events(io.StringIO):
    """A stream for ProgressReporter that parses the JSON lines written to it."""

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == kind]


def reporter_with_events():
    from MultiModalSegLib.progress import ProgressReporter

    events = Events()
    return ProgressReporter(stream=events), events


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child ``python -m MultiModalSegLib``: the repository importable, one thread."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(extra)
    return env


PYTHON = sys.executable
