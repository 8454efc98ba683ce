"""Destinations that cannot be written: refused in one sentence before any work; a failing save keeps the weights.

Issue 11, item 2: ``finetune`` into a read-only model store and ``train`` into a read-only
output ran every iteration and then died with "Internal error (OSError)" and nothing saved;
``predict``/``demo``/``evaluate`` under a read-only parent, and ``demo --output`` onto a file,
ended in a traceback. Real unwritable folders (read_only.py), the real CLI (``cli.main``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from read_only import KINDS, Sabotage, replace_with_file, unwritable_destination
from test_cli import write_ct
from test_training_finetune import LABELED, UNLABELED, stores, tiny_finetune  # noqa: F401 - the fixture
from test_training_support import ATRIUM, tiny_config

from MultiModalSegLib import cli
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.progress import ProgressReporter
from MultiModalSegLib.training.finetune import finetune
from MultiModalSegLib.training.train import train
from MultiModalSegLib.weights import load_model_package

LIVER_DATA = "phantom:liver-ct2:1:0?shape=16x32x32"
TRAIN_OPTIONS = ["--data", ATRIUM, "--iterations", "3", "--patch", "16x32x32", "--batch", "2", "--labeled-batch", "1",
                 "--base-filters", "2", "--checkpoint-every", "2", "--validate-every", "100", "--device", "cpu"]


def run_main(capsys, argv: list[str]) -> tuple[int, list[dict]]:
    code = cli.main(argv)
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def command_for(verb: str, destination: Path, tmp_path: Path, package: Path) -> tuple[list[str], dict[str, str]]:
    """The argv of ``verb`` writing into ``destination``, and the environment it needs."""
    if verb == "predict":
        image = write_ct(tmp_path / "case_ven.nii.gz")
        return ["predict", "--model", str(package), "--input", f"venous={image}", "--output", str(destination),
                "--device", "cpu"], {}
    if verb == "demo":
        return ["demo", "--output", str(destination)], {}
    if verb == "evaluate":
        return ["evaluate", "--model", str(package), "--data", LIVER_DATA, "--output", str(destination),
                "--device", "cpu", "--bootstrap", "10"], {}
    if verb == "train":
        return ["train", "--method", "dtc", "--output", str(destination), *TRAIN_OPTIONS], {}
    finetune = ["finetune", "--model", "tiny-liver", "--labeled", LABELED, "--iterations", "2", "--device", "cpu"]
    if verb == "finetune-output":
        return [*finetune, "--output", str(destination)], {}
    if verb == "finetune-store":
        return [*finetune, "--output", str(tmp_path / "finetune-out")], {"MMSEG_MODEL_STORE": str(destination)}
    assert verb == "finetune-no-store"  # the new version goes to OUTPUT/model, so OUTPUT is the destination
    return [*finetune, "--no-store", "--output", str(destination)], {}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("verb", ["predict", "demo", "evaluate", "train", "finetune-output", "finetune-store",
                                  "finetune-no-store"])
def test_an_unwritable_destination_is_refused_before_any_work(verb, kind, tmp_path, capsys, monkeypatch,
                                                              tiny_maml_package, stores):  # noqa: F811
    with unwritable_destination(kind, tmp_path) as destination:
        argv, environment = command_for(verb, destination, tmp_path, tiny_maml_package.folder)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        code, events = run_main(capsys, argv)
        assert code == 2, events
        assert [e["event"] for e in events] == ["error"], "work started before the destination was checked"
        message = events[-1]["message"]
        assert str(destination) in message and message.endswith(".") and "\n" not in message
        assert ("is a file, not a folder" in message) if kind == "under-a-file" else ("Read-only file system" in message)
        if kind == "read-only-mount":
            assert not any(destination.iterdir())
    assert not (tmp_path / "finetune-out").exists()


def test_demo_output_onto_a_file_is_one_sentence(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("the user's notes\n")
    code, events = run_main(capsys, ["demo", "--output", str(target)])
    assert code == 2 and [e["event"] for e in events] == ["error"]
    assert events[0]["message"] == (f"The output folder {target} is a file, not a folder; choose a folder you can "
                                    "write to with --output.")
    assert target.read_text() == "the user's notes\n"


@pytest.mark.slow
def test_a_finetune_whose_store_fails_at_save_time_keeps_the_weights_and_says_where(stores, tmp_path, monkeypatch):  # noqa: F811
    """The store is writable at the start (the check passes) and becomes a file during training."""
    monkeypatch.setenv("MMSEG_RESCUE_DIR", str(tmp_path / "rescued"))
    sabotage = Sabotage(lambda e: e["event"] == "progress", replace_with_file(stores["store"]))
    monkeypatch.setattr("sys.stdout", sabotage)
    code = cli.main(["finetune", "--model", "tiny-liver", "--labeled", LABELED, "--unlabeled", UNLABELED,
                     "--output", str(tmp_path / "out"), "--iterations", "3", "--device", "cpu"])
    events = sabotage.records()
    assert sabotage.fired and code == 2, events
    error = events[-1]
    assert error["event"] == "error" and "Internal error" not in error["message"]
    kept = Path(error["kept_weights"])
    assert kept.parent == tmp_path / "rescued" and f"kept as a complete model package in {kept}" in error["message"]
    rescued = load_model_package(kept)  # complete and verified (sha256)
    source = load_model_package(stores["bundled"] / "tiny-liver")
    assert rescued.manifest["provenance"]["iteration"] == 3
    trained, start = rescued.load_state_dict(), source.load_state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start), "the kept weights are the fine-tuned ones"


@pytest.mark.slow
def test_a_training_whose_output_fails_mid_run_keeps_the_weights_and_says_where(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMSEG_RESCUE_DIR", str(tmp_path / "rescued"))
    output = tmp_path / "run"
    sabotage = Sabotage(lambda e: e["event"] == "progress", replace_with_file(output))
    monkeypatch.setattr("sys.stdout", sabotage)
    code = cli.main(["train", "--method", "dtc", "--output", str(output), *TRAIN_OPTIONS])
    events = sabotage.records()
    assert sabotage.fired and code == 2, events
    kept = Path(events[-1]["kept_weights"])
    assert load_model_package(kept).manifest["provenance"]["iteration"] == 2  # the first checkpoint's save
    assert f"Could not write {output / 'checkpoint'}" in events[-1]["message"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("function", ["train", "finetune-output", "finetune-store"])
def test_the_library_refuses_an_unwritable_destination_before_any_work(function, kind, tmp_path, stores):  # noqa: F811
    """A script calling ``train()`` / ``finetune()`` directly is told as early as the command line."""
    events = io.StringIO()
    with unwritable_destination(kind, tmp_path) as destination, pytest.raises(MultiModalSegError) as error:
        reporter = ProgressReporter(stream=events)
        if function == "train":
            train(tiny_config("dtc"), ATRIUM, destination, reporter=reporter)
        elif function == "finetune-output":
            finetune(stores["bundled"] / "tiny-liver", LABELED, None, destination, config=tiny_finetune(),
                     reporter=reporter)
        else:
            finetune(stores["bundled"] / "tiny-liver", LABELED, None, tmp_path / "finetune-out",
                     config=tiny_finetune(), reporter=reporter, store=destination)
    message = str(error.value)
    assert str(destination) in message and message.endswith(".")
    assert ("is a file, not a folder" in message) if kind == "under-a-file" else ("Read-only file system" in message)
    assert events.getvalue() == "", "work started before the destination was checked"
    assert not (tmp_path / "finetune-out").exists()
