"""``mmseg models``: a table a person reads, one JSON object per model with ``--json``."""

from __future__ import annotations

import json

from tiny_packages import make_tiny_dtc, make_tiny_maml, tiny_dtc_manifest, tiny_maml_manifest

from MultiModalSegLib.cli import main


def test_models_prints_a_table_with_the_plan_spacing_and_json_for_programs(tmp_path, capsys, monkeypatch):
    from MultiModalSegLib.weights import save_model_package

    bundled = tmp_path / "bundled"
    maml = {**tiny_maml_manifest(), "provenance": {"data": "phantom:liver-ct2:40:1"},
            "plan": {"target_spacing": [0.8, 0.8, 2.5]}}
    save_model_package(make_tiny_maml(), maml, bundled / "tiny-maml")
    save_model_package(make_tiny_dtc(), {**tiny_dtc_manifest(), "plan": "not a plan"}, bundled / "tiny-dtc")
    monkeypatch.setenv("MMSEG_BUNDLED_MODELS", str(bundled))
    monkeypatch.setenv("MMSEG_MODEL_STORE", str(tmp_path / "store"))

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:4] == ["id", "version", "method", "modalities"] and "labels" in header and "spacing" in header
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"tiny-maml", "tiny-dtc"}
    assert "arterial, venous" in rows["tiny-maml"] and "liver, tumor" in rows["tiny-maml"]
    assert "phantom:liver-ct2:40:1" in rows["tiny-maml"] and "0.8 x 0.8 x 2.5 mm" in rows["tiny-maml"]
    assert "input grid" in rows["tiny-dtc"]  # no usable plan: predict works on the input's own grid
    columns = [line.index(" maml ") if " maml " in line else line.index(" dtc ") for line in lines[1:]]
    assert len(set(columns)) == 1, "the method column is aligned"

    assert main(["models", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {record["id"]: record for record in records}
    assert by_id["tiny-maml"]["target_spacing"] == [0.8, 0.8, 2.5] and by_id["tiny-dtc"]["target_spacing"] is None
    assert by_id["tiny-maml"]["event"] == "model" and by_id["tiny-maml"]["source"] == "bundled"
