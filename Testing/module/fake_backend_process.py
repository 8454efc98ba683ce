"""A stand-in backend for the process-runner tests: prints JSON-line events slowly, as the real CLI does.

Run as ``python fake_backend_process.py MODE [STEPS]``. It is a real subprocess (the runner
under test starts it exactly as it starts ``python -m MultiModalSegLib``); only the work is
fake, so the tests take a second instead of loading torch. Modes:

``progress``     STEPS progress events, 50 ms apart, then a ``result`` event; exit 0
``error``        two progress events, then an ``error`` event; exit 2 (a user error)
``crash``        a progress event, a traceback on stderr; exit 1 (no error event)
``chatty``       a plain stdout line and a stderr warning between events; exit 0
``grandchild``   starts a child process (the grandchild of the runner) that sleeps, reports both
                 pids in an ``started`` event, then keeps printing progress until killed
``stubborn``     like ``grandchild``, but both ignore SIGTERM (the runner must escalate to SIGKILL)
``sleep``        prints nothing and sleeps (for timeouts)
``late-cancel``  a run whose SIGTERM arrives after its commit point (a fine-tuning that already made
                 its new version current): records the signal, then a ``warning`` and a ``result``; exit 0
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def start_grandchild(ignore_sigterm: bool) -> subprocess.Popen:
    code = ("import signal, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
            + "time.sleep(120)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(mode: str, steps: int) -> int:
    if mode == "progress":
        for done in range(1, steps + 1):
            time.sleep(0.05)
            emit("progress", stage="inference", done=done, total=steps)
        emit("result", output="/tmp/fake", files=["labelmap.nii.gz"], timing={"seconds": 0.1})
        return 0
    if mode == "error":
        emit("progress", stage="loading", done=1, total=2)
        emit("progress", stage="loading", done=2, total=2)
        emit("error", message="Modality 'venous' is missing; select its volume.")
        return 2
    if mode == "crash":
        emit("progress", stage="loading", done=1, total=1)
        print("Traceback (most recent call last):", file=sys.stderr, flush=True)
        print("RuntimeError: CUDA out of memory", file=sys.stderr, flush=True)
        return 1
    if mode == "chatty":
        emit("progress", stage="loading", done=1, total=1)
        print("a stray print from a library", flush=True)
        print("UserWarning: something minor", file=sys.stderr, flush=True)
        emit("model_version", id="m", version=1, current=True, source="bundled")
        emit("result", message="done")
        return 0
    if mode in ("grandchild", "stubborn"):
        stubborn = mode == "stubborn"
        if stubborn and os.name != "nt":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = start_grandchild(ignore_sigterm=stubborn)
        emit("started", pid=os.getpid(), grandchild=grandchild.pid)
        done = 0
        while True:
            done += 1
            emit("progress", stage="training", done=done, total=1000)
            time.sleep(0.05)
    if mode == "sleep":
        time.sleep(120)
        return 0
    if mode == "late-cancel":
        received: list[int] = []
        signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
        emit("started", pid=os.getpid())
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        emit("warning", message="The cancel request (SIGTERM) arrived after the new version was saved; the run is "
                                "complete and its results are kept.", late_cancel=True, signal="SIGTERM")
        emit("result", model={"id": "m", "version": 2})
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5))
