"""CPU seconds per iteration of every arm from a short run, and what a profile's whole reproduction would cost.

``python tools/reproduce.py --timing`` trains every arm of the profile for a few iterations (one
validation at the end) as a child ``mmseg train``, reads its progress events as they come and
samples the child's CPU time (``/proc/<pid>/stat``: user + system, i.e. core-seconds with one
thread) at each: the difference between the last and the third iteration gives the CPU seconds
per iteration without the start-up, the validation event the cost of one validation. CPU time,
not wall time, because the machine is shared: the budget is in core-hours.

The projection for the profile's budgets (:func:`projected_cost`) adds, per arm and seed: the
start-up, ``iterations x s/it``, one validation and one checkpoint per ``validate_every``; per
evaluation and seed: a start-up and the test cases at the validation's cost per case (x 1.3 for
the metrics; the ensemble runs two networks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from reproduction.arms import arms_of, evaluations_of, train_command, training_case_count
from reproduction.data import prepare_data, training_list
from reproduction.plan import data_folder
from reproduction.profiles import Profile
from reproduction.runner import REPOSITORY, child_environment

from MultiModalSegLib.atomic import atomic_write_json

EVALUATION_STARTUP_SECONDS = 4.0  # CPU of starting `mmseg evaluate` and reading the test cases (measured: 3-4 s)
METRIC_FACTOR = 1.3  # an evaluated case also computes surface distances


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux ``/proc``), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_arm(command: list[str], warmup: int = 2) -> dict[str, float | None]:
    """Run one short training and return its start-up, per-iteration, validation and checkpoint CPU seconds."""
    process = subprocess.Popen([sys.executable if part == "python" else part for part in command], cwd=REPOSITORY,
                               env=child_environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    marks: dict[str, float] = {}
    done = 0
    assert process.stdout is not None
    for line in process.stdout:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        cpu = process_cpu_seconds(process.pid)
        if cpu is None:
            continue
        if event.get("event") == "progress" and event.get("stage") == "training":
            done = int(event.get("done", 0))
            marks[f"iteration-{done}"] = cpu
        elif event.get("event") in ("validation", "checkpoint"):
            marks[event["event"]] = cpu
    _, status, usage = os.wait4(process.pid, 0)
    total = float(usage.ru_utime + usage.ru_stime)
    if os.waitstatus_to_exitcode(status) != 0 or done <= warmup or f"iteration-{warmup}" not in marks:
        return {"seconds_per_iteration": None, "total": total}
    per_iteration = (marks[f"iteration-{done}"] - marks[f"iteration-{warmup}"]) / (done - warmup)
    validation = marks.get("validation", marks[f"iteration-{done}"]) - marks[f"iteration-{done}"]
    checkpoint = marks.get("checkpoint", total) - marks.get("validation", marks[f"iteration-{done}"])
    return {"seconds_per_iteration": per_iteration, "startup": marks["iteration-1"] - per_iteration,
            "validation": validation, "checkpoint": checkpoint, "total": total}


def measure(profile: Profile, work: Path, papers: list[str], iterations: int = 8, parallel: int = 2) -> dict:
    """Measure every arm of ``papers`` (first seed) and write ``WORK/timing.json``; return it."""
    jobs = {}
    for paper in papers:
        size = replace(profile.paper(paper), iterations=iterations, validations=1)
        folder = data_folder(work, paper)
        record = prepare_data(profile.paper(paper), folder)
        for arm in arms_of(paper):
            data = training_list(record, folder, training_case_count(arm, size))
            output = work / "timing" / paper / arm.key
            jobs[f"{paper}/{arm.key}"] = train_command(arm, size, profile.seeds[0], data, output) + ["--overwrite"]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        measured = dict(zip(jobs, pool.map(measure_arm, jobs.values())))
    record = {"profile": profile.name, "iterations": iterations, "arms": measured,
              "projection": projected_cost(profile, measured, papers)}
    atomic_write_json(work / "timing.json", record)
    return record


def projected_cost(profile: Profile, measured: dict[str, dict], papers: list[str]) -> dict[str, float]:
    """CPU seconds of the profile's whole reproduction per paper (and ``total``), from the measured arms."""
    costs: dict[str, float] = {}
    for paper in papers:
        size = profile.paper(paper)
        validations = size.iterations / size.validate_every
        per_case: dict[str, float] = {}
        seconds = 0.0
        for arm in arms_of(paper):
            m = measured[f"{paper}/{arm.key}"]
            if m.get("seconds_per_iteration") is None:
                raise SystemExit(f"The timing run of {paper}/{arm.key} failed; run `mmseg train` for it by hand.")
            seconds += (m["startup"] + size.iterations * m["seconds_per_iteration"]
                        + validations * (m["validation"] + m["checkpoint"]))
            per_case[arm.key] = m["validation"] / max(1, size.validation_cases)
        for evaluation in evaluations_of(paper):
            case_cost = sum(per_case[arm] for arm in evaluation.arms)
            seconds += EVALUATION_STARTUP_SECONDS + size.test_cases * case_cost * METRIC_FACTOR
        costs[paper] = seconds * len(profile.seeds)
    costs["total"] = sum(costs.values())
    return costs


def timing_markdown(record: dict) -> str:
    """The measured figures as a markdown table (for docs/reproduction.md and the terminal)."""
    lines = [f"Timing run: {record['iterations']} iterations per arm, CPU seconds (one thread, shared machine).", "",
             "| arm | s/iteration | start-up | one validation | one checkpoint |", "|---|---:|---:|---:|---:|"]
    for key, m in record["arms"].items():
        if m.get("seconds_per_iteration") is None:
            lines.append(f"| {key} | failed | | | |")
            continue
        lines.append(f"| {key} | {m['seconds_per_iteration']:.3f} | {m['startup']:.1f} | {m['validation']:.1f} | "
                     f"{m['checkpoint']:.1f} |")
    projection = record["projection"]
    lines += ["", "Projected CPU of the profile's whole reproduction: "
              + ", ".join(f"{key} {value / 3600:.2f} core-hours" for key, value in projection.items()) + "."]
    return "\n".join(lines)
