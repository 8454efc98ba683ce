"""Where everything of a reproduction lives in its work folder, and the jobs that make it.

Layout of ``WORK`` (one folder per profile is safest: finished arms of another budget are refused)::

    WORK/<paper>/data/                      phantom cases and case lists (data.py)
    WORK/<paper>/train/<arm>/seed-<s>/      mmseg train output (best/, last/, checkpoint/, result.json)
    WORK/<paper>/eval/<evaluation>/seed-<s>/ mmseg evaluate output (per_case.csv, summary.json, summary.md)
    WORK/<paper>/logs/                      each job's JSON-line output
    WORK/jobs/                              each job's attempts: wall and CPU seconds, exit code
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from reproduction.arms import (
    Evaluation,
    arm_by_key,
    arms_of,
    ensemble_command,
    evaluate_command,
    evaluations_of,
    train_command,
    training_case_count,
)
from reproduction.data import prepare_data, training_list
from reproduction.profiles import Profile
from reproduction.runner import Job
from reproduce_common import finished_arm


def train_folder(work: Path, paper: str, arm: str, seed: int) -> Path:
    return work / paper / "train" / arm / f"seed-{seed}"


def eval_folder(work: Path, paper: str, evaluation: str, seed: int) -> Path:
    return work / paper / "eval" / evaluation / f"seed-{seed}"


def data_folder(work: Path, paper: str) -> Path:
    return work / paper / "data"


def train_key(paper: str, arm: str, seed: int) -> str:
    return f"{paper}/train/{arm}/seed-{seed}"


def eval_key(paper: str, evaluation: str, seed: int) -> str:
    return f"{paper}/eval/{evaluation}/seed-{seed}"


def training_done(folder: Path, iterations: int) -> bool:
    """A finished training of exactly ``iterations`` (another budget in the folder is an error, not 'not done')."""
    return finished_arm(folder, folder.parent.name, iterations, announce=False) is not None


def evaluation_done(folder: Path, trained: Iterable[Path]) -> bool:
    """``summary.json`` exists and is newer than every training it scores (a retrained arm is evaluated again)."""
    summary = folder / "summary.json"
    if not summary.is_file():
        return False
    return all((path / "result.json").is_file()
               and summary.stat().st_mtime >= (path / "result.json").stat().st_mtime for path in trained)


def _train_job(profile: Profile, work: Path, paper: str, arm_key: str, seed: int, data: Path) -> Job:
    size = profile.paper(paper)
    arm = arm_by_key(paper, arm_key)
    output = train_folder(work, paper, arm_key, seed)

    def command() -> list[str]:
        base = train_command(arm, size, seed, data, output)
        if (output / "checkpoint").is_dir():
            return base + ["--resume"]
        if output.is_dir() and any(output.iterdir()):
            return base + ["--overwrite"]  # an attempt that ended before its first checkpoint
        return base

    return Job(key=train_key(paper, arm_key, seed), command=command,
               done=lambda: training_done(output, size.iterations),
               log=work / paper / "logs" / f"train-{arm_key}-seed-{seed}.log")


def _eval_job(profile: Profile, work: Path, paper: str, evaluation: Evaluation, seed: int, test: Path) -> Job:
    size = profile.paper(paper)
    output = eval_folder(work, paper, evaluation.key, seed)
    trained = [train_folder(work, paper, arm, seed) for arm in evaluation.arms]

    def command() -> list[str]:
        if evaluation.ensemble:
            members = {arm_by_key(paper, arm).modalities[0]: folder / "last" for arm, folder in
                       zip(evaluation.arms, trained)}
            return ensemble_command(evaluation, size, members, test, output, profile.bootstrap)
        return evaluate_command(evaluation, size, trained[0] / "last", test, output, profile.bootstrap)

    return Job(key=eval_key(paper, evaluation.key, seed), command=command,
               done=lambda: evaluation_done(output, trained),
               log=work / paper / "logs" / f"eval-{evaluation.key}-seed-{seed}.log",
               depends=tuple(train_key(paper, arm, seed) for arm in evaluation.arms))


def build_jobs(profile: Profile, work: Path, papers: Iterable[str], seeds: Iterable[int],
               arms: Iterable[str] | None = None) -> list[Job]:
    """Every training and evaluation job of ``papers`` x ``seeds`` (optionally only some arms), seed by seed.

    Writes each paper's phantom data first if it is missing. The order puts one seed's arms together,
    so a chunk that ends early leaves whole seeds rather than a bit of every seed.
    """
    wanted = set(arms) if arms is not None else None
    jobs: list[Job] = []
    for paper in papers:
        size = profile.paper(paper)
        folder = data_folder(work, paper)
        record = prepare_data(size, folder)
        test = folder / "test.json"
        for seed in seeds:
            included: set[str] = set()
            for arm in arms_of(paper):
                if wanted is not None and arm.key not in wanted:
                    continue
                data = training_list(record, folder, training_case_count(arm, size))
                jobs.append(_train_job(profile, work, paper, arm.key, seed, data))
                included.add(arm.key)
            for evaluation in evaluations_of(paper):
                if wanted is not None and not set(evaluation.arms) <= included:
                    continue
                jobs.append(_eval_job(profile, work, paper, evaluation, seed, test))
    return jobs


def unfinished(profile: Profile, work: Path, papers: Iterable[str] = ("maml", "dtc")) -> list[str]:
    """The keys of every training and evaluation of ``papers`` in the profile that is not finished (reads no data)."""
    missing = []
    for paper in papers:
        size = profile.paper(paper)
        for seed in profile.seeds:
            for arm in arms_of(paper):
                if not training_done(train_folder(work, paper, arm.key, seed), size.iterations):
                    missing.append(train_key(paper, arm.key, seed))
            for evaluation in evaluations_of(paper):
                trained = [train_folder(work, paper, arm, seed) for arm in evaluation.arms]
                if not evaluation_done(eval_folder(work, paper, evaluation.key, seed), trained):
                    missing.append(eval_key(paper, evaluation.key, seed))
    return missing


def profile_record(work: Path, profile: Profile) -> None:
    """Remember which profile a work folder belongs to; refuse to mix two profiles in one folder."""
    path = work / "profile.json"
    if path.is_file():
        name = json.loads(path.read_text(encoding="utf-8")).get("profile")
        if name != profile.name:
            raise SystemExit(f"{work} holds a '{name}' reproduction, not '{profile.name}'; use another --work folder.")
        return
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": profile.name}) + "\n", encoding="utf-8")
