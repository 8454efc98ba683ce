"""tools/reproduction: the arms' settings as ``mmseg train`` reads them, the job runner, and the report's verdicts.

No network trains here (the smoke profile, ``python tools/reproduce.py --profile smoke``, runs every
code path with real trainings; docs/reproduction.md). The arms' command lines go through the real
``mmseg train`` parser and config builder, so what is checked is what a run trains with.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path[:0] = [str(TOOLS)]

from reproduction import arms as arms_module  # noqa: E402
from reproduction.plan import eval_folder, evaluation_done, train_folder, unfinished  # noqa: E402
from reproduction.profiles import FULL, SMOKE, Profile  # noqa: E402
from reproduction.runner import Job, run_jobs  # noqa: E402


def training_config(command: list[str]):
    from MultiModalSegLib.cli import build_parser
    from MultiModalSegLib.training.cli_verbs import training_config_from_arguments

    assert command[:4] == ["python", "-m", "MultiModalSegLib", "train"]
    return training_config_from_arguments(build_parser().parse_args(command[3:]))


def configs_of(paper: str, profile: Profile = FULL) -> dict[str, object]:
    size = profile.paper(paper)
    return {arm.key: training_config(arms_module.train_command(arm, size, 7, Path("data.json"), Path("out")))
            for arm in arms_module.arms_of(paper)}


def test_every_maml_arm_has_one_budget_and_ms_ma_keeps_deep_supervision():
    configs = configs_of("maml")
    for config in configs.values():
        assert (config.iterations, config.patch_size, config.batch_size, config.seed) == (1000, (16, 48, 48), 2, 7)
        assert config.validation_cases == 4 and config.validate_every == 66 and config.optimizer.schedule == "poly"
        assert config.architecture_overrides["max_filters"] == 32
    assert {key: c.method for key, c in configs.items()} == {
        "unet-early-fusion": "unet", "unet-arterial": "unet", "unet-venous": "unet", "ms-ma": "maml", "maml": "maml"}
    # MS+MA: no mutual learning (lambda 0), the deep supervision every U-Net row has (lambda_deep 1)
    assert (configs["ms-ma"].maml.lambda_intra, configs["ms-ma"].maml.lambda_deep) == (0.0, 1)
    # MAML: the reference's loss weighting (lambda 1, joint weight w_0), nothing overridden
    assert (configs["maml"].maml.lambda_intra, configs["maml"].maml.lambda_deep) == (1.0, None)
    assert configs["maml"].maml.joint_weight is None


def test_dtc_arms_have_the_references_batch_shape_and_scaled_schedule():
    configs = configs_of("dtc")
    for config in configs.values():
        assert (config.iterations, config.patch_size, config.seed) == (1200, (32, 48, 48), 7)
        assert config.dtc.base_filters == 4
        # the reference's step at 2500 of 6000 iterations and its 40-stair ramp, scaled to 1200 iterations
        assert config.optimizer.step_interval(config.iterations) == 500
        assert config.dtc.consistency_rampup_iterations == 1200 and config.dtc.consistency_rampup_step == 30
    assert {key: c.dtc.variant for key, c in configs.items()} == {
        "dtc-16-64": "seg+lsf+dtc", "vnet-16": "seg", "vnet-80": "seg", "lsf-16": "lsf", "seg-lsf-16": "seg+lsf"}
    # DTC: 2 labeled + 2 unlabeled; every supervised arm: the same 2 labeled patches per iteration
    assert (configs["dtc-16-64"].batch_size, configs["dtc-16-64"].labeled_batch_size) == (4, 2)
    assert configs["dtc-16-64"].labeled_cases == 16
    for key in ("vnet-16", "vnet-80", "lsf-16", "seg-lsf-16"):
        assert (configs[key].batch_size, configs[key].labeled_batch_size, configs[key].labeled_cases) == (2, 2, None)
    size = FULL.dtc
    counts = {arm.key: arms_module.training_case_count(arm, size) for arm in arms_module.arms_of("dtc")}
    assert counts == {"dtc-16-64": 80, "vnet-16": 16, "vnet-80": 80, "lsf-16": 16, "seg-lsf-16": 16}


def test_dtc_evaluations_post_process_and_maml_table_2_leaves_a_phase_out():
    size = FULL.dtc
    for evaluation in arms_module.evaluations_of("dtc"):
        command = arms_module.evaluate_command(evaluation, size, Path("pkg"), Path("t.json"), Path("o"), 100)
        assert "--largest-component" in command
    by_key = {e.key: e for e in arms_module.evaluations_of("maml")}
    command = arms_module.evaluate_command(by_key["maml-arterial-only"], FULL.maml, Path("p"), Path("t"), Path("o"), 9)
    assert command[command.index("--missing") + 1] == "venous" and "--largest-component" not in command
    assert by_key["ms-ensemble"].ensemble and by_key["ms-ensemble"].arms == ("unet-arterial", "unet-venous")


def test_smoke_profile_arms_build_valid_configs():
    for paper in ("maml", "dtc"):
        for config in configs_of(paper, SMOKE).values():
            assert config.iterations == 10 and config.validate_every == 1


# ------------------------------------------------------------------------------------------------ runner


def python_job(tmp_path: Path, key: str, code: str, depends: tuple[str, ...] = ()) -> Job:
    marker = tmp_path / f"{key}.done"
    script = f"import pathlib, sys, time\n{code}\npathlib.Path({str(marker)!r}).write_text('ok')\n"
    return Job(key=key, command=lambda: ["python", "-c", script], done=marker.is_file,
               log=tmp_path / "logs" / f"{key}.log", depends=depends)


def test_runner_runs_dependencies_first_blocks_after_a_failure_and_records_cpu(tmp_path):
    jobs = [python_job(tmp_path, "train", "sum(range(2_000_000))"),
            python_job(tmp_path, "eval", "assert pathlib.Path(sys.argv[0]).name == '-c'", depends=("train",)),
            python_job(tmp_path, "broken", "sys.exit(3)"),
            python_job(tmp_path, "after-broken", "", depends=("broken",))]
    summary = run_jobs(jobs, records=tmp_path / "records", parallel=2, poll_seconds=0.05, echo=lambda _: None)
    assert summary.finished == ["train", "eval"] or sorted(summary.finished) == ["eval", "train"]
    assert summary.failed == ["broken"] and summary.blocked == ["after-broken"] and not summary.complete
    record = json.loads((tmp_path / "records" / "train.json").read_text())
    assert record["attempts"][0]["exit_code"] == 0 and record["attempts"][0]["cpu_seconds"] >= 0.0
    assert json.loads((tmp_path / "records" / "broken.json").read_text())["attempts"][0]["exit_code"] == 3
    again = run_jobs(jobs[:2], records=tmp_path / "records", parallel=2, poll_seconds=0.05, echo=lambda _: None)
    assert sorted(again.already_done) == ["eval", "train"] and again.complete  # finished jobs are kept


def test_runner_ends_running_jobs_at_the_deadline(tmp_path):
    jobs = [python_job(tmp_path, "long", "time.sleep(30)"), python_job(tmp_path, "later", "", depends=("long",))]
    started = time.time()
    summary = run_jobs(jobs, records=tmp_path / "records", parallel=1, deadline=time.time() + 1.0, poll_seconds=0.05,
                       echo=lambda _: None)
    assert time.time() - started < 15
    assert summary.interrupted == ["long"] and summary.not_started == ["later"]
    assert json.loads((tmp_path / "records" / "long.json").read_text())["attempts"][0]["interrupted"] is True


# ------------------------------------------------------------------------------------------------ report

TINY = replace(SMOKE, name="tiny", seeds=(1, 2, 3), bootstrap=400)


def fake_run(work: Path, profile: Profile, dice: dict[str, float], curve_slope: dict[str, float]) -> None:
    """Per-case CSVs and result.json curves as a finished reproduction would leave them (no training)."""
    rng = np.random.default_rng(0)
    cases = [f"case-{i}" for i in range(12)]
    case_effect = rng.normal(0, 0.05, len(cases))
    for evaluation in arms_module.EVALUATIONS:
        label = arms_module.CLAIM_LABEL[evaluation.paper]
        for seed in profile.seeds:
            folder = eval_folder(work, evaluation.paper, evaluation.key, seed)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "per_case.csv", "w", newline="", encoding="utf-8") as stream:
                writer = csv.DictWriter(stream, fieldnames=["case_id", "label", "dice", "jaccard", "assd_voxel",
                                                            "hd95_voxel", "asd_voxel", "reference_empty"])
                writer.writeheader()
                for name in ([label, "liver"] if evaluation.paper == "maml" else [label]):
                    for case, effect in zip(cases, case_effect):
                        value = float(np.clip(dice[evaluation.key] + effect + rng.normal(0, 0.01), 0, 1))
                        writer.writerow({"case_id": case, "label": name, "dice": value, "jaccard": value / (2 - value),
                                         "assd_voxel": 2.0, "hd95_voxel": 5.0, "asd_voxel": 1.5, "reference_empty": 0})
            (folder / "summary.json").write_text("{}")
    for arm in arms_module.ARMS:
        size = profile.paper(arm.paper)
        label = arms_module.CLAIM_LABEL[arm.paper]
        for seed in profile.seeds:
            folder = train_folder(work, arm.paper, arm.key, seed)
            (folder / "last").mkdir(parents=True, exist_ok=True)
            (folder / "last" / "manifest.json").write_text("{}")
            iterations = list(range(10, 101, 10))
            history = [{"iteration": i, "dice_per_class": {label: 0.5 + curve_slope[arm.key] * i
                                                           + rng.normal(0, 0.0005)}} for i in iterations]
            (folder / "result.json").write_text(json.dumps({"iterations": size.iterations, "validation": history}))
    for path in work.rglob("summary.json"):  # evaluations newer than their trainings
        path.touch()


@pytest.mark.slow
def test_report_gives_each_claim_its_verdict(tmp_path):
    from reproduction.report import load_paper, write_report

    profile = replace(TINY, maml=replace(TINY.maml, iterations=100), dtc=replace(TINY.dtc, iterations=100))
    dice = {"unet-early-fusion": 0.40, "ms-ensemble": 0.42, "ms-ma": 0.50, "maml": 0.60,  # Table 1 in order
            "unet-arterial": 0.45, "maml-arterial-only": 0.35,  # Table 2, arterial: MAML's branch worse
            "unet-venous": 0.20, "maml-venous-only": 0.50,  # venous: the U-Net is at the floor
            "vnet-16": 0.80, "dtc-16-64": 0.86, "vnet-80": 0.86,  # DTC gain; upper bound: no difference
            "lsf-16": 0.82, "seg-lsf-16": 0.84}
    slopes = {arm.key: 0.0 for arm in arms_module.ARMS}
    slopes["seg-lsf-16"] = 0.004  # still rising by 0.4 Dice points per iteration
    fake_run(tmp_path, profile, dice, slopes)
    assert unfinished(profile, tmp_path) == []
    maml = {claim.claim.title: claim for claim in load_paper(profile, tmp_path, "maml").claims}
    dtc = {claim.claim.title: claim for claim in load_paper(profile, tmp_path, "dtc").claims}
    assert maml["MAML Table 1: the ordering"].verdict == "reproduced"
    ordering = maml["MAML Table 1: the ordering"].comparisons[0].difference
    assert ordering.mean == pytest.approx(0.10, abs=0.01) and ordering.ci_low > 0.08 and ordering.n_seeds == 3
    missing = maml["MAML Table 2: a missing phase"]
    assert [item.verdict.word for item in missing.comparisons] == ["contradicted", "untested"]
    assert missing.verdict == "contradicted"
    assert dtc["DTC Table 1: the semi-supervised gain"].verdict == "reproduced"
    assert dtc["DTC Table 1: the upper bound"].verdict == "unresolved"
    ablation = dtc["DTC Table 2: the ablation"].comparisons
    assert [item.verdict.word for item in ablation] == ["reproduced", "unresolved", "unresolved"]
    assert "did not reach a plateau" in ablation[1].verdict.reason
    markdown = write_report(profile, tmp_path, tmp_path / "docs" / "results.md", ["maml", "dtc"], "test")
    assert "| **MAML Table 1: the ordering** (reproduced)" in markdown
    assert "| **contradicted** |" in markdown and "| **untested** |" not in markdown  # the claims' verdicts
    assert "Near the floor (mean tumour Dice under 30 %): U-Net, venous only (" in markdown
    verdicts = json.loads((tmp_path / "verdicts.json").read_text())
    assert verdicts["dtc"]["claims"][0]["verdict"] == "reproduced"
    assert verdicts["dtc"]["plateau"]["seg-lsf-16"]["holds"] is False
    for name in ("maml-curves", "maml-boxes", "dtc-curves", "dtc-boxes"):
        assert f"(images/reproduce-{name}.png)" in markdown
        assert (tmp_path / "docs" / "images" / f"reproduce-{name}.png").stat().st_size > 5000
    # a report of one paper (``--only dtc --report-only`` while MAML still trains) says what it leaves out
    shutil.rmtree(tmp_path / "maml" / "train" / "maml")
    assert unfinished(profile, tmp_path, ["dtc"]) == [] and unfinished(profile, tmp_path) != []
    partial = write_report(profile, tmp_path, tmp_path / "docs" / "results.md", ["dtc"], "test")
    assert "Not in this report: MAML" in partial and "DTC Table 1: the semi-supervised gain" in partial
    assert "MAML Table 1: the ordering" not in partial


def test_an_evaluation_older_than_its_training_is_not_done(tmp_path):
    trained, evaluated = tmp_path / "train", tmp_path / "eval"
    trained.mkdir()
    evaluated.mkdir()
    (evaluated / "summary.json").write_text("{}")
    time.sleep(0.01)
    (trained / "result.json").write_text("{}")
    assert not evaluation_done(evaluated, [trained])
    (evaluated / "summary.json").touch()
    assert evaluation_done(evaluated, [trained])
