"""tools/reproduce_dtc.py: every arm gets the same budget, its own ablation setting, the scaled ramp.

No training here (the script's run is documented in docs/results.md); these check the settings each
arm trains with and the argument checks, which decide whether the comparison is fair.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from MultiModalSegLib.errors import MultiModalSegError

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "reproduce_dtc.py"


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce_dtc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_dtc"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("reproduce_dtc", None)


def test_every_arm_has_the_same_budget_and_its_own_setting(reproduce, tmp_path):
    args = reproduce.parse_arguments(["--work", str(tmp_path), "--markdown", str(tmp_path / "r.md"),
                                      "--iterations", "120", "--patch", "32x48x48"])
    configs = {arm.key: reproduce.training_config(arm, args) for arm in reproduce.ARMS}
    assert {key: c.dtc.variant for key, c in configs.items()} == {
        "vnet-16": "seg", "dtc-16-64": "seg+lsf+dtc", "vnet-80": "seg", "lsf-16": "lsf", "seg-lsf-16": "seg+lsf"}
    for config in configs.values():
        assert (config.iterations, config.patch_size, config.batch_size, config.seed) == (120, (32, 48, 48), 2, 1337)
        assert config.dtc.base_filters == 8 and config.validation_cases == 0
        # the reference's 6000-iteration ramp (40 stairs) and lr step (2500) scaled to 120 iterations
        assert config.dtc.consistency_rampup_iterations == 120 and config.dtc.consistency_rampup_step == 3
        assert config.optimizer.step_every == 50 and config.optimizer.schedule == "step"
    # only DTC mixes unlabeled samples into the batch; the supervised arms' batches are all labeled
    assert configs["dtc-16-64"].labeled_batch_size == 1
    assert all(configs[k].labeled_batch_size == 2 for k in ("vnet-16", "vnet-80", "lsf-16", "seg-lsf-16"))
    arms = {arm.key: arm for arm in reproduce.ARMS}
    assert (arms["dtc-16-64"].cases, arms["dtc-16-64"].labeled) == (80, 16)
    assert (arms["vnet-80"].cases, arms["vnet-80"].labeled) == (80, 80)
    assert args.test_spec == "phantom:atrium-mr:20:9"
    assert reproduce.data_spec(16, 1, None) == "phantom:atrium-mr:16:1"


def test_arguments_that_cannot_make_a_fair_run_are_refused(reproduce, tmp_path):
    base = ["--work", str(tmp_path), "--markdown", str(tmp_path / "r.md")]
    with pytest.raises(MultiModalSegError, match="labeled-batch"):
        reproduce.parse_arguments(base + ["--batch", "2", "--labeled-batch", "2"])
    with pytest.raises(MultiModalSegError, match="test-cases"):
        reproduce.parse_arguments(base + ["--test-cases", "0"])


def test_ci_verdicts(reproduce):
    a = {"mean": 0.8, "ci_low": 0.75, "ci_high": 0.85}
    assert reproduce.overlap_verdict(a, {"mean": 0.6, "ci_low": 0.55, "ci_high": 0.65}) == "higher, CIs apart"
    assert reproduce.overlap_verdict({"mean": 0.6, "ci_low": 0.55, "ci_high": 0.65}, a) == "lower, CIs apart"
    assert reproduce.overlap_verdict(a, {"mean": 0.78, "ci_low": 0.7, "ci_high": 0.8}) == "inside the CIs"
