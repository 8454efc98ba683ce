"""Cancel of a real ``predict`` through the module's backend process (issues 11 and 15).

The panel's Cancel sends SIGTERM to the backend's process group; the backend must stop at its
next window by itself (a ``cancelled`` event and exit 143, well before the runner's SIGKILL),
write no output, and the job's temporary folder must go. A headless ``slicer-core`` scene stands
in for the Slicer application; the backend is the real CLI on the tiny untrained model.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from module_testing import TINY_MODEL_ID

from MultiModalSeg.MultiModalSegModuleLib import backend_jobs
from MultiModalSeg.MultiModalSegModuleLib.backend_process import EVENT_CANCELLED, EVENT_PROGRESS, RunState
from MultiModalSeg.MultiModalSegSceneLib.headless import create_headless_slicer


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGTERM to a process group is POSIX")
def test_cancel_stops_a_real_predict_at_its_next_window_and_nothing_is_left(backend_settings) -> None:
    from slicer.util import updateVolumeFromArray

    context = create_headless_slicer()
    volume = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "case_venous")
    # 96x256x256 against the tiny model's 48x128x128 patch: 27 windows, far more than one batch
    updateVolumeFromArray(volume, np.random.default_rng(0).normal(80, 40, (96, 256, 256)).astype(np.int16))
    job = backend_jobs.start_predict(backend_settings, TINY_MODEL_ID, {"venous": volume}, device="cpu")
    process = job.process
    seen = []
    deadline = time.monotonic() + 240
    while not any(e.event == EVENT_PROGRESS and e.stage == "inference" for e in seen):
        assert time.monotonic() < deadline and not process.is_finished(), [e.describe() for e in seen]
        seen += process.poll_events()
        time.sleep(0.02)
    # The backend finishes its current batch of windows first; on a loaded 2-core test machine
    # that can outlast the panel's 5 s grace, after which the runner would SIGKILL and this test
    # could not see whether the backend stops by itself. (A SIGKILL is safe too: see
    # Testing/backend/test_predict_interruption.py.)
    process.cancel_grace_seconds = 90.0
    process.request_cancel()
    while not process.is_finished():
        assert time.monotonic() < deadline
        seen += process.poll_events()
        time.sleep(0.02)

    outcome = process.outcome()
    assert outcome.state == RunState.CANCELLED
    assert outcome.exit_code == 143, "the backend stopped itself on SIGTERM (not killed after the grace period)"
    cancelled = [record for record in outcome.records if record.event == EVENT_CANCELLED]
    assert cancelled and cancelled[-1].fields["signal"] == "SIGTERM"
    inference = [e for e in seen if e.event == EVENT_PROGRESS and e.stage == "inference"]
    assert cancelled[-1].fields["window"] == inference[-1].done < inference[-1].total
    assert not job.output_dir.exists()
    with pytest.raises(backend_jobs.BackendRunError, match="Cancelled"):
        backend_jobs.finish_predict(context.scene, job)
    assert not job.work_dir.exists()
