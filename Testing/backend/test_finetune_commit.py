"""Cancel at the end of ``finetune`` (issue 11, item 5): one commit point, and exit code and events agree.

A SIGTERM 50 ms into the final save once gave exit 0 and made the new version current without a
word. The commit point is now the rename that makes the complete new version appear: a signal
before it (while the version is staged) cancels, exit 143, and the store is as it was; a signal
after it no longer cancels: exit 0, a ``warning`` that says the cancel came too late, the
``result``, and the new version current. Real signals (``signal.raise_signal`` into the CLI's
installed handler, at the event that marks each side of the commit point) and a real store.
"""

from __future__ import annotations

import signal

import pytest
from read_only import Sabotage
from test_training_cancellation import leftovers
from test_training_finetune import LABELED, UNLABELED, stores  # noqa: F401 - the fixture

from MultiModalSegLib import cli
from MultiModalSegLib.atomic import leftover_temporary_files
from MultiModalSegLib.weights import load_model_package


def finetune_with_sigterm_at(when, output, monkeypatch, *extra: str) -> tuple[int, list[dict], Sabotage]:
    terminate = Sabotage(when, lambda: signal.raise_signal(signal.SIGTERM))
    monkeypatch.setattr("sys.stdout", terminate)
    code = cli.main(["finetune", "--model", "tiny-liver", "--labeled", LABELED, "--unlabeled", UNLABELED,
                     "--output", str(output), "--iterations", "2", "--device", "cpu", *extra])
    return code, terminate.records(), terminate


def saving_starts(event: dict) -> bool:
    return event["event"] == "progress" and event.get("stage") == "saving" and event["done"] == 0


def version_committed(event: dict) -> bool:
    return event["event"] == "checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("no_store", [False, True])
def test_a_sigterm_while_the_new_version_is_saved_cancels_and_writes_nothing(stores, tmp_path, monkeypatch,  # noqa: F811
                                                                             no_store):
    output = tmp_path / "out"
    code, events, terminate = finetune_with_sigterm_at(saving_starts, output, monkeypatch,
                                                       *(["--no-store"] if no_store else []))
    assert terminate.fired and code == 143
    assert events[-1]["event"] == "cancelled" and events[-1]["signal"] == "SIGTERM"
    assert events[-1]["message"].startswith("Fine-tuning was cancelled")
    assert not any(e["event"] in ("result", "checkpoint", "warning") for e in events)
    # no version, no current pointer (add_version may have made the empty folder of the id)
    assert [p for p in stores["store"].rglob("*") if not p.is_dir()] == [], "the store changed"
    assert not (output / "result.json").exists() and not (output / "model").exists()
    assert leftovers(tmp_path) == [] and leftover_temporary_files(tmp_path) == []


@pytest.mark.slow
def test_a_sigterm_after_the_commit_point_finishes_the_run_and_says_so(stores, tmp_path, monkeypatch):  # noqa: F811
    output = tmp_path / "out"
    code, events, terminate = finetune_with_sigterm_at(version_committed, output, monkeypatch)
    assert terminate.fired and code == 0
    kinds = [e["event"] for e in events]
    assert kinds[-3:] == ["checkpoint", "warning", "result"] and "cancelled" not in kinds
    warning = events[-2]
    assert warning["late_cancel"] is True and warning["signal"] == "SIGTERM"
    assert "arrived after the new version was saved" in warning["message"]
    assert events[-1]["model"]["version"] == 2
    assert (stores["store"] / "tiny-liver" / "current").read_text().strip() == "2"
    assert load_model_package(stores["store"] / "tiny-liver" / "v2").version == 2
    assert (output / "result.json").is_file()
    assert leftovers(tmp_path) == [] and leftover_temporary_files(tmp_path) == []
