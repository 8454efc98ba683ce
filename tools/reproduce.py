"""Reproduce the papers' tables on phantoms and write ``docs/results.md`` (``make reproduce``).

Every arm of MAML Tables 1-2 and DTC Tables 1-2 is trained with ``mmseg train`` for each training
seed of the profile, evaluated with ``mmseg evaluate`` on held-out phantoms, and each claim of each
paper gets a verdict (reproduced, contradicted, unresolved, untested) from a paired bootstrap over
cases and seeds, with learning curves and per-case box plots (``tools/reproduction/``).

Resumable and runnable in chunks: finished trainings and evaluations in ``--work`` are kept, an
interrupted training resumes from its checkpoint. ``--only``, ``--seeds`` and ``--arms`` pick what
this invocation runs, ``--max-minutes`` ends it (running children are stopped and resume next
time), ``--jobs`` runs that many children side by side (one thread each). The report is written
when every training and evaluation of the profile is finished (``--report-only`` writes it without
running anything); with ``--only PAPER`` it covers that paper alone, once its runs are finished. Examples::

    python tools/reproduce.py --timing                     # s/iteration of every arm, projected cost
    python tools/reproduce.py --only maml --seeds 1337 --max-minutes 120
    python tools/reproduce.py                              # everything left, then docs/results.md
    python tools/reproduce.py --profile smoke --work /tmp/smoke --output /tmp/smoke/results.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "tools")]

from reproduction.arms import PAPERS, arms_of  # noqa: E402
from reproduction.plan import build_jobs, profile_record, unfinished  # noqa: E402
from reproduction.profiles import PROFILES, get_profile  # noqa: E402
from reproduction.runner import run_jobs  # noqa: E402

from MultiModalSegLib.atomic import atomic_write_text  # noqa: E402
from MultiModalSegLib.errors import MultiModalSegError  # noqa: E402


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=sorted(PROFILES), help="sizes and budgets (default full)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for data, trainings, evaluations (default reproduce-output/<profile>)")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "docs" / "results.md",
                        help="the report (its PNGs go to images/ beside it)")
    parser.add_argument("--only", choices=PAPERS, default=None, help="run one paper's arms only")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds to run (default: the profile's)")
    parser.add_argument("--arms", default=None, help="comma-separated arm keys to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="children side by side, one thread each (default 2)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop starting jobs and end the running ones after this many minutes")
    parser.add_argument("--timing", action="store_true",
                        help="measure s/iteration of every arm with a short run and project the profile's cost")
    parser.add_argument("--timing-iterations", type=int, default=8, help="iterations of each timing run (default 8)")
    parser.add_argument("--report-only", action="store_true", help="write the report from finished runs only")
    args = parser.parse_args(argv)
    args.profile = get_profile(args.profile)
    args.work = (args.work or REPOSITORY / "reproduce-output" / args.profile.name).resolve()
    args.papers = [args.only] if args.only else list(PAPERS)
    if args.seeds:
        try:
            args.seed_list = [int(text) for text in args.seeds.split(",") if text.strip()]
        except ValueError:
            parser.error(f"--seeds takes comma-separated integers, not '{args.seeds}'")
        unknown = sorted(set(args.seed_list) - set(args.profile.seeds))
        if unknown:
            parser.error(f"seed(s) {unknown} are not the profile's {list(args.profile.seeds)}")
    else:
        args.seed_list = list(args.profile.seeds)
    args.arm_list = None
    if args.arms:
        args.arm_list = [text.strip() for text in args.arms.split(",") if text.strip()]
        known = {arm.key for paper in args.papers for arm in arms_of(paper)}
        if set(args.arm_list) - known:
            parser.error(f"unknown arm(s) {sorted(set(args.arm_list) - known)}; known: {sorted(known)}")
    if args.jobs < 1 or (args.max_minutes is not None and args.max_minutes <= 0):
        parser.error("--jobs must be at least 1 and --max-minutes positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    command = shlex.join(["python", "tools/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
    profile = args.profile
    try:
        profile_record(args.work, profile)
        if args.timing:
            from reproduction.timing import measure, timing_markdown

            print(timing_markdown(measure(profile, args.work, args.papers, args.timing_iterations, args.jobs)))
            return 0
        if not args.report_only:
            deadline = time.time() + 60 * args.max_minutes if args.max_minutes else None
            jobs = build_jobs(profile, args.work, args.papers, args.seed_list, args.arm_list)
            summary = run_jobs(jobs, records=args.work / "jobs", parallel=args.jobs, deadline=deadline)
            print(f"this run: {len(summary.finished)} job(s) finished, {len(summary.already_done)} already done, "
                  f"{len(summary.failed)} failed, {len(summary.blocked)} blocked, {len(summary.interrupted)} "
                  f"interrupted, {len(summary.not_started)} not started; {summary.cpu_seconds / 3600:.2f} core-hours "
                  f"in {summary.wall_seconds / 60:.1f} min", flush=True)
            if summary.failed:
                print("failed: " + ", ".join(summary.failed) + " (their logs are in WORK/<paper>/logs/)",
                      file=sys.stderr)
                return 1
        missing = unfinished(profile, args.work, args.papers)
        if missing:
            print(f"{len(missing)} training/evaluation job(s) of the '{profile.name}' profile are not finished yet "
                  f"(e.g. {missing[0]}); {args.output} is written once they are. Run the same command again.")
            return 0 if not args.report_only else 1
        from reproduction.report import write_report

        markdown = write_report(profile, args.work, args.output.resolve(), args.papers, command)
        atomic_write_text(args.output, markdown + "\n")
        print(f"wrote {args.output}")
        return 0
    except MultiModalSegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
