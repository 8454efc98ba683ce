"""Named training settings: ``mmseg train --set KEY=VALUE`` and the learning-rate step as a fraction of the run."""

from __future__ import annotations

import pytest

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.training.config import OptimizerConfig, TrainingConfig


def test_set_reaches_nested_settings_with_their_types():
    config = TrainingConfig.for_method("dtc")
    config.apply_setting("optimizer.step_fraction=0.4167")
    config.apply_setting("dtc.consistency_rampup_iterations=1500")  # an int where the default is a float
    config.apply_setting("maml.lambda_deep=1")
    config.apply_setting("foreground_fraction=0.5")
    config.apply_setting("patch_size=[16, 32, 32]")
    config.apply_setting("dtc.variant=seg")  # not JSON: taken as text
    assert config.optimizer.step_fraction == 0.4167
    assert config.dtc.consistency_rampup_iterations == 1500.0
    assert isinstance(config.dtc.consistency_rampup_iterations, float)
    assert config.maml.lambda_deep == 1 and config.foreground_fraction == 0.5
    assert config.patch_size == (16, 32, 32) and config.dtc.variant == "seg"
    config.apply_setting("maml.lambda_deep=null")
    assert config.maml.lambda_deep is None
    config.validate()


@pytest.mark.parametrize("assignment, message", [
    ("maml.lambda_intr=0", "Unknown setting 'maml.lambda_intr'"),
    ("solver.lr=1", "Unknown settings section 'solver'"),
    ("maml=1", "Unknown setting 'maml'"),
    ("iterations=1.5", "needs a int"),
    ("deterministic=1", "needs a bool"),
    ("maml.lambda_deep", "KEY=VALUE"),
])
def test_set_refuses_unknown_names_and_wrong_types(assignment, message):
    with pytest.raises(MultiModalSegError, match=message):
        TrainingConfig.for_method("maml").apply_setting(assignment)


def test_train_verb_reports_a_bad_setting_as_a_user_error(tmp_path, capsys):
    from MultiModalSegLib.cli import main

    code = main(["train", "--method", "maml", "--data", "phantom:liver-ct2:2?shape=16x32x32", "--output",
                 str(tmp_path / "out"), "--iterations", "1", "--set", "maml.no_such_thing=1"])
    assert code == 2
    assert "Unknown setting 'maml.no_such_thing'" in capsys.readouterr().out


def test_step_fraction_scales_the_learning_rate_steps_with_the_run():
    # DTC steps at 2500 of 6000 iterations; at 400 iterations the same shape steps at round(0.41667 * 400) = 167
    optimizer = OptimizerConfig(schedule="step", learning_rate=0.01, step_factor=0.1, step_fraction=2500 / 6000)
    assert optimizer.step_interval(400) == 167 and optimizer.step_interval(6000) == 2500
    assert optimizer.learning_rate_at(166, 400) == pytest.approx(0.01)
    assert optimizer.learning_rate_at(167, 400) == pytest.approx(0.001)
    assert optimizer.learning_rate_at(334, 400) == pytest.approx(0.0001)
    assert OptimizerConfig(schedule="step", step_every=100).learning_rate_at(250, 400) == pytest.approx(1e-4)
    with pytest.raises(MultiModalSegError, match="step_fraction"):
        OptimizerConfig(step_fraction=1.5).validate()
