"""Run the reproduction's jobs as child processes: resumable, side by side, each with one thread, CPU recorded.

A :class:`Job` is one command (``mmseg train`` of one arm and seed, ``mmseg evaluate`` of one
evaluation and seed, or the ensemble's evaluation) with the jobs it waits for and a test of
whether it is done (a finished training's ``result.json`` with the budget's iterations; an
evaluation's ``summary.json`` newer than the training it scores). :func:`run_jobs` starts up to
``parallel`` ready jobs at once with ``OMP_NUM_THREADS=1`` (two arms side by side on two
cores), writes each child's JSON-line output to its log, and records every attempt's wall and
CPU time (``os.wait4``: user + system seconds of the child, i.e. core-seconds) in
``WORK/jobs/``. At the deadline (``--max-minutes``) it starts nothing new and ends the running
children with SIGTERM: a training keeps its last checkpoint and resumes from it on the next run,
an evaluation starts again. Finished jobs are never redone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from MultiModalSegLib.atomic import atomic_write_json

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass
class Job:
    """One child process of the reproduction."""

    key: str  # e.g. "maml/train/ms-ma/seed-1337"
    command: Callable[[], list[str]]  # built when the job starts (resume or not is decided then)
    done: Callable[[], bool]
    log: Path
    depends: tuple[str, ...] = ()


@dataclass
class RunSummary:
    """What one :func:`run_jobs` call did."""

    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # a job they wait for failed
    interrupted: list[str] = field(default_factory=list)  # ended at the deadline
    not_started: list[str] = field(default_factory=list)  # the deadline came first
    already_done: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not (self.failed or self.blocked or self.interrupted or self.not_started)


def child_environment(threads: int = 1) -> dict[str, str]:
    """The environment of every child: one thread per process (two arms share two cores), this checkout first."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    paths = [str(REPOSITORY), str(REPOSITORY / "tools")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def record_path(records: Path, key: str) -> Path:
    return records / (re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".json")


def attempts_of(records: Path, key: str) -> list[dict[str, object]]:
    """Every recorded attempt of a job (wall and CPU seconds, exit code, whether it was interrupted)."""
    path = record_path(records, key)
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("attempts", []))


def _record(records: Path, job: Job, command: list[str], attempt: dict[str, object]) -> None:
    attempts = attempts_of(records, job.key) + [attempt]
    atomic_write_json(record_path(records, job.key), {"key": job.key, "command": command, "attempts": attempts})


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    command: list[str]
    started: float
    stream: object


def _finish(running: _Running, status: int, usage: object, records: Path, interrupted: bool) -> int:
    code = os.waitstatus_to_exitcode(status)
    running.process.returncode = code
    running.stream.close()  # type: ignore[attr-defined]
    cpu = float(usage.ru_utime + usage.ru_stime)  # type: ignore[attr-defined]
    _record(records, running.job, running.command, {
        "started": datetime.fromtimestamp(running.started, UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - running.started, 1), "cpu_seconds": round(cpu, 1), "exit_code": code,
        "interrupted": interrupted})
    return code


def run_jobs(jobs: list[Job], *, records: Path, parallel: int = 2, deadline: float | None = None,
             poll_seconds: float = 0.5, echo: Callable[[str], None] = print) -> RunSummary:
    """Run the jobs that are not done, ``parallel`` at a time, in order where their dependencies allow.

    ``deadline``: a ``time.time()`` after which nothing starts and running children are ended.
    """
    started = time.time()
    summary = RunSummary()
    state: dict[str, str] = {}
    for job in jobs:
        if job.done():
            state[job.key] = "done"
            summary.already_done.append(job.key)
    pending = [job for job in jobs if job.key not in state]
    known = {job.key for job in jobs}
    running: list[_Running] = []
    env = child_environment()
    try:
        while pending or running:
            late = deadline is not None and time.time() >= deadline
            if late and running:
                for item in running:
                    echo(f"[deadline] ending {item.job.key} (a training resumes from its last checkpoint)")
                    try:
                        os.killpg(item.process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                for item in running:
                    _, status, usage = os.wait4(item.process.pid, 0)
                    _finish(item, status, usage, records, interrupted=True)
                    summary.interrupted.append(item.job.key)
                running = []
            if late:
                summary.not_started.extend(job.key for job in pending)
                break
            for job in list(pending):
                if len(running) >= parallel:
                    break
                waits = [state.get(key) for key in job.depends if key in known]
                if any(value in ("failed", "blocked") for value in waits):
                    state[job.key] = "blocked"
                    summary.blocked.append(job.key)
                    pending.remove(job)
                    continue
                if any(value != "done" for value in waits):
                    continue
                command = [sys.executable if part == "python" else part for part in job.command()]
                job.log.parent.mkdir(parents=True, exist_ok=True)
                stream = open(job.log, "a", encoding="utf-8")  # noqa: SIM115 - closed in _finish
                stream.write(json.dumps({"event": "reproduce", "command": command}) + "\n")
                stream.flush()
                echo(f"[start] {job.key}")
                process = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                           start_new_session=True)
                running.append(_Running(job, process, command, time.time(), stream))
                pending.remove(job)
            still = []
            for item in running:
                pid, status, usage = os.wait4(item.process.pid, os.WNOHANG)
                if pid == 0:
                    still.append(item)
                    continue
                code = _finish(item, status, usage, records, interrupted=False)
                ok = code == 0 and item.job.done()
                state[item.job.key] = "done" if ok else "failed"
                (summary.finished if ok else summary.failed).append(item.job.key)
                echo(f"[{'done' if ok else 'FAILED'}] {item.job.key}"
                     + ("" if ok else f" (exit code {code}; see {item.job.log})"))
            running = still
            if running or pending:
                time.sleep(poll_seconds)
    except BaseException:
        for item in running:  # Ctrl-C: end the children too (a training keeps its last checkpoint)
            try:
                os.killpg(item.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        raise
    summary.wall_seconds = time.time() - started
    summary.cpu_seconds = sum(float(attempt.get("cpu_seconds") or 0.0) for key in summary.finished
                              + summary.failed + summary.interrupted for attempt in attempts_of(records, key)[-1:])
    return summary
