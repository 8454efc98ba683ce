"""``evaluate_model`` and ``mmseg evaluate``: per-case CSV, summaries, bootstrap CIs, missing modalities, errors.

Real components throughout: a tiny (untrained) MAML package saved and loaded through the
verified loader, synthetic cases written as NIfTI files plus a JSON case list and read back
through ``datasets.load_cases``, the real ``predict``. The cases' labels come from a fixed
geometric rule (a liver ellipsoid with a tumour sphere inside), so every run is identical.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MultiModalSegLib.cli import main
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.evaluation import (
    CSV_COLUMNS,
    Region,
    bootstrap_ci,
    case_metrics,
    dtc_table,
    evaluate_model,
    maml_table,
    regions_for_labels,
)

SHAPE = (8, 16, 16)  # one sliding window of the tiny package (patch 8x16x16): fast
SPACING = 2.0  # isotropic, mm


# --------------------------------------------------------------------------- synthetic cases


def rule_label(index: int, shape=SHAPE) -> np.ndarray:
    """Liver (1) = an ellipsoid whose size depends on the case index; tumour (2) = a sphere inside it."""
    z, y, x = np.indices(shape, dtype=np.float64)
    cz, cy, cx = (s / 2 - 0.5 for s in shape)
    rz, ry, rx = 2.5 + 0.5 * (index % 3), 5.0 + index % 3, 4.5 + (index % 2)
    liver = ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    tumour = (z - cz) ** 2 + (y - cy - 1) ** 2 + (x - cx + 1) ** 2 <= (1.5 + 0.5 * (index % 2)) ** 2
    label = np.zeros(shape, dtype=np.uint8)
    label[liver] = 1
    label[liver & tumour] = 2
    return label


def to_image(array: np.ndarray, spacing=(SPACING,) * 3, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def phases_for(label: np.ndarray, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(index)
    arterial = -50 + 110.0 * (label == 1) + 230.0 * (label == 2) + rng.normal(0, 10, label.shape)
    venous = -40 + 150.0 * (label == 1) + 90.0 * (label == 2) + rng.normal(0, 10, label.shape)
    return {"arterial": arterial.astype(np.float32), "venous": venous.astype(np.float32)}


def write_case_list(folder: Path, count: int, labeled: bool = True, label_spacing=None, extra=None,
                    drop: tuple[str, ...] = ()) -> Path:
    """Write ``count`` cases as NIfTI files and a JSON case list; return the list's path."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(count):
        label = rule_label(index)
        entry: dict = {"id": f"case{index:02d}", "images": {}}
        for name, array in phases_for(label, index).items():
            if name in drop:
                continue
            sitk.WriteImage(to_image(array), str(folder / f"case{index:02d}_{name}.nii.gz"))
            entry["images"][name] = f"case{index:02d}_{name}.nii.gz"
        if extra:
            image = to_image(phases_for(label, index)["venous"])
            sitk.WriteImage(image, str(folder / f"case{index:02d}_{extra}.nii.gz"))
            entry["images"][extra] = f"case{index:02d}_{extra}.nii.gz"
        if labeled:
            spacing = label_spacing or (SPACING,) * 3
            sitk.WriteImage(to_image(label, spacing=spacing), str(folder / f"case{index:02d}_label.nii.gz"))
            entry["label"] = f"case{index:02d}_label.nii.gz"
        entries.append(entry)
    path = folder / "cases.json"
    path.write_text(json.dumps(entries, indent=2))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, lines


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def number(text: str) -> float:
    return float(text) if text != "" else math.nan


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_cases():
    rng = np.random.default_rng(7)
    population = rng.normal(0.8, 0.1, size=400)
    widths = []
    for n in (5, 20, 80):
        values = population[:n]
        low, high = bootstrap_ci(values, n=1000, seed=0)
        assert low <= values.mean() <= high
        widths.append(high - low)
        # close to the normal approximation 2 * 1.96 * sd / sqrt(n) of a mean's 95 % interval
        assert high - low == pytest.approx(3.92 * np.std(values) / np.sqrt(n), rel=0.15)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_is_reproducible_and_handles_small_samples():
    values = [0.7, 0.9, 0.75, 0.85, 0.6, float("nan")]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    low95, high95 = bootstrap_ci(values, alpha=0.05)
    low50, high50 = bootstrap_ci(values, alpha=0.5)
    assert low95 <= low50 <= high50 <= high95
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_ci([float("nan")]))
    with pytest.raises(MultiModalSegError):
        bootstrap_ci(values, n=0)


# --------------------------------------------------------------------------- case metrics


def test_metrics_in_mm_equal_voxel_metrics_times_isotropic_spacing():
    reference = rule_label(1)
    prediction = np.roll(reference, 2, axis=2)  # shifted by two voxels along x
    prediction[prediction == 2] = 0  # and the tumour missed
    regions = regions_for_labels([{"value": 1, "name": "liver"}, {"value": 2, "name": "tumor"}])
    rows = {row.label: row for row in case_metrics("c", prediction, reference, (1.5, 1.5, 1.5), regions)}
    liver = rows["liver"]
    for metric in ("assd", "hd95", "asd"):
        voxels = getattr(liver, f"{metric}_voxel")
        assert voxels > 0
        assert getattr(liver, f"{metric}_mm") == pytest.approx(voxels * 1.5, rel=1e-12)
    assert liver.predicted_ml == pytest.approx(np.count_nonzero(prediction == 1) * 1.5 ** 3 / 1000)
    assert liver.reference_ml == pytest.approx(np.count_nonzero(reference == 1) * 1.5 ** 3 / 1000)
    tumour = rows["tumor"]
    assert tumour.predicted_empty and not tumour.reference_empty
    assert tumour.dice == 0.0 and math.isnan(tumour.hd95_voxel) and math.isnan(tumour.assd_mm)


def test_anisotropic_spacing_and_composite_regions():
    reference = rule_label(2)
    prediction = reference.copy()
    prediction[prediction == 2] = 1  # tumour labelled as liver: whole organ perfect, tumour missed
    labels = [{"value": 1, "name": "liver"}, {"value": 2, "name": "tumor"}]
    regions = regions_for_labels(labels, [{"name": "liver and tumor", "values": [1, 2]}])
    assert regions[-1] == Region("liver and tumor", (1, 2), "region")
    rows = {row.label: row for row in case_metrics("c", prediction, reference, (3.0, 1.0, 1.0), regions)}
    assert rows["liver and tumor"].dice == 1.0 and rows["liver and tumor"].hd95_mm == 0.0
    assert rows["liver"].dice < 1.0
    whole = np.count_nonzero(reference > 0)
    assert rows["liver and tumor"].reference_ml == pytest.approx(whole * 3.0 / 1000)
    with pytest.raises(MultiModalSegError, match="not label values"):
        regions_for_labels(labels, [{"name": "enhancing", "values": [4]}])
    with pytest.raises(MultiModalSegError, match="appear twice"):
        regions_for_labels(labels, [{"name": "liver", "values": [1, 2]}])


def test_tables_have_the_papers_columns():
    reference = rule_label(0)
    regions = regions_for_labels([{"value": 1, "name": "liver"}, {"value": 2, "name": "tumor"}])
    from MultiModalSegLib.evaluation import summarize

    rows = [row for i in range(3) for row in case_metrics(f"c{i}", np.roll(reference, i, 1), reference, (1, 1, 1),
                                                            regions)]
    summary = summarize(rows, regions, resamples=200)
    maml = maml_table([("MAML", summary), ("U-Net", summary)])
    assert maml.splitlines()[0] == ("| Method | liver Dice [%] | liver ASSD [voxel] | tumor Dice [%] | "
                                    "tumor ASSD [voxel] |")
    assert len(maml.strip().splitlines()) == 4
    dtc = dtc_table([("DTC", summary)], regions=["tumor"], extra_columns={"labeled / unlabeled": ["16 / 64"]})
    assert dtc.splitlines()[0] == ("| Method | labeled / unlabeled | Structure | Dice [%] | Jaccard [%] | "
                                   "95HD [voxel] | ASD [voxel] |")
    dice = summary[0].metrics["dice"]
    assert f"{dice.mean * 100:.2f} ± {dice.std * 100:.2f}" in maml


# --------------------------------------------------------------------------- end to end


def test_evaluate_cli_writes_per_case_csv_and_summaries(tiny_maml_package, tmp_path, capsys):
    cases = write_case_list(tmp_path / "data", 4)
    out = tmp_path / "eval"
    code, lines = run_cli(capsys, "evaluate", "--model", str(tiny_maml_package.folder), "--data", str(cases),
                          "--output", str(out), "--device", "cpu", "--bootstrap", "500", "--seed", "3",
                          "--region", "liver and tumor=1,2", "--save-predictions")
    assert code == 0, lines[-1]
    assert lines[0]["event"] == "started" and lines[-1]["event"] == "result"
    per_case = [line for line in lines if line.get("stage") == "evaluation"]
    assert [line["done"] for line in per_case] == [0, 1, 2, 3, 4]
    assert [line.get("case") for line in per_case[1:]] == ["case00", "case01", "case02", "case03"]
    assert set(per_case[-1]["dice"]) == {"liver", "tumor", "liver and tumor"}
    result = lines[-1]
    for name in result["files"]:
        assert (out / name).is_file(), name
    assert "predictions/case00.nii.gz" in result["files"]

    rows = read_csv(out / "per_case.csv")
    with open(out / "per_case.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(CSV_COLUMNS)
    assert len(rows) == 4 * 3  # cases x (2 labels + 1 region)
    assert {(row["case_id"], row["label"]) for row in rows} == {
        (f"case{i:02d}", name) for i in range(4) for name in ("liver", "tumor", "liver and tumor")}
    for row in rows:
        assert row["available"] == "arterial;venous"
        assert row["spacing_mm"] == "2.0;2.0;2.0"
        for metric in ("assd", "hd95", "asd"):
            voxels, mm = number(row[f"{metric}_voxel"]), number(row[f"{metric}_mm"])
            assert (math.isnan(voxels) and math.isnan(mm)) or mm == pytest.approx(voxels * SPACING, rel=1e-12)
        assert number(row["predicted_ml"]) == pytest.approx(int(row["predicted_voxels"]) * 8 / 1000)
        assert row["predicted_empty"] == ("1" if int(row["predicted_voxels"]) == 0 else "0")
    # the reference volumes follow the labelling rule, not the model
    for index in range(4):
        liver = next(r for r in rows if r["case_id"] == f"case{index:02d}" and r["label"] == "liver")
        assert int(liver["reference_voxels"]) == np.count_nonzero(rule_label(index) == 1)
    # the prediction written for inspection is what was scored
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / "case01.nii.gz")))
    liver01 = next(r for r in rows if r["case_id"] == "case01" and r["label"] == "liver")
    assert np.count_nonzero(saved == 1) == int(liver01["predicted_voxels"])

    # summary.json recomputed independently from the CSV
    summary = json.loads((out / "summary.json").read_text())
    assert summary["statistics"]["resamples"] == 500 and summary["statistics"]["seed"] == 3
    assert summary["available"] == ["arterial", "venous"] and summary["missing"] == []
    assert [entry["name"] for entry in summary["labels"]] == ["liver", "tumor", "liver and tumor"]
    checked = 0
    for entry in summary["labels"]:
        present = [r for r in rows if r["label"] == entry["name"] and r["reference_empty"] == "0"]
        assert entry["n_present"] == len(present) == 4
        for metric, stats in entry["metrics"].items():
            values = np.array([number(r[metric]) for r in present])
            values = values[np.isfinite(values)]
            assert stats["n"] == len(values)
            if len(values) == 0:
                assert stats["mean"] is None
                continue
            assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
            if len(values) > 1:
                assert stats["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9, abs=1e-15)
                rng = np.random.default_rng(3)
                means = values[rng.integers(0, len(values), size=(500, len(values)))].mean(axis=1)
                assert stats["ci_low"] == pytest.approx(np.quantile(means, 0.025), rel=1e-9, abs=1e-15)
                assert stats["ci_high"] == pytest.approx(np.quantile(means, 0.975), rel=1e-9, abs=1e-15)
                assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
            checked += 1
    assert checked >= 10
    assert result["mean_dice"]["liver"] == pytest.approx(summary["labels"][0]["metrics"]["dice"]["mean"])

    markdown = (out / "summary.md").read_text()
    assert "MAML Table 1 layout" in markdown and "DTC Tables 1-2 layout" in markdown
    assert "| Method | liver Dice [%] | liver ASSD [voxel] |" in markdown
    assert "Dice [%] | Jaccard [%] | 95HD [voxel] | ASD [voxel] |" in markdown
    assert "95 % CI of the mean" in markdown

    # the same folder again needs --overwrite
    code, lines = run_cli(capsys, "evaluate", "--model", str(tiny_maml_package.folder), "--data", str(cases),
                          "--output", str(out), "--device", "cpu")
    assert code == 2 and "--overwrite" in lines[-1]["message"]


def test_missing_modalities_are_removed_from_the_inputs(tiny_maml_package, tmp_path, capsys):
    from MultiModalSegLib.datasets import load_cases

    cases = load_cases(str(write_case_list(tmp_path / "data", 2)))
    full = evaluate_model(tiny_maml_package, cases, device="cpu", bootstrap=50)
    without_arterial = evaluate_model(tiny_maml_package, cases, missing=["arterial"], device="cpu", bootstrap=50)
    assert full.available == ["arterial", "venous"]
    assert without_arterial.available == ["venous"] and without_arterial.missing == ["arterial"]
    assert all(row.available == ("venous",) for row in without_arterial.rows)
    assert all(case["available"] == ["venous"] for case in without_arterial.cases)
    assert without_arterial.method_name.endswith("without arterial")
    # the two runs see different inputs, so they predict differently
    assert [r.predicted_voxels for r in full.rows] != [r.predicted_voxels for r in without_arterial.rows]

    # leaving out the reference modality: the data need not even hold it (the CLI loads the rest)
    data = write_case_list(tmp_path / "arterial-only", 2, drop=("venous",))
    out = tmp_path / "eval"
    code, lines = run_cli(capsys, "evaluate", "--model", str(tiny_maml_package.folder), "--data", str(data),
                          "--missing", "venous", "--output", str(out), "--device", "cpu", "--bootstrap", "50")
    assert code == 0, lines[-1]
    assert lines[-1]["available"] == ["arterial"] and lines[-1]["missing"] == ["venous"]
    assert {row["available"] for row in read_csv(out / "per_case.csv")} == {"arterial"}
    # data that hold the left-out modality: loaded (the label is checked on its grid), not fed to the model
    code, lines = run_cli(capsys, "evaluate", "--model", str(tiny_maml_package.folder), "--data",
                          str(tmp_path / "data" / "cases.json"), "--missing", "arterial", "--output",
                          str(tmp_path / "eval2"), "--device", "cpu", "--bootstrap", "50")
    assert code == 0, lines[-1]
    assert lines[-1]["available"] == ["venous"]
    rows = read_csv(tmp_path / "eval2" / "per_case.csv")
    assert [number(r["dice"]) for r in rows] == [row.dice for row in without_arterial.rows]


def test_unlabeled_cases_are_skipped(tiny_maml_package, tmp_path):
    from MultiModalSegLib.datasets import load_cases

    labeled = load_cases(str(write_case_list(tmp_path / "a", 1)))
    unlabeled = load_cases(str(write_case_list(tmp_path / "b", 1, labeled=False)))
    unlabeled[0].case_id = "unlabeled"
    result = evaluate_model(tiny_maml_package, labeled + unlabeled, device="cpu", bootstrap=20)
    assert [case["case_id"] for case in result.cases] == ["case00"]
    assert result.skipped == [{"case_id": "unlabeled", "source": unlabeled[0].source, "reason": "no label map"}]
    assert len(result.rows) == 2


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("case, message", [
    ("no_labeled_case", "has a label map"),
    ("missing_unknown", "does not have; its modalities are arterial, venous"),
    ("missing_every_modality", "every modality"),
    ("label_geometry", "does not lie on the grid"),
    ("data_lacks_modality", "has no 'venous' image"),
    ("bad_region", "NAME=VALUE"),
    ("unknown_region_value", "not label values"),
])
def test_bad_input_gives_an_error_event_and_exit_code_2(tiny_maml_package, tmp_path, capsys, case, message):
    model = str(tiny_maml_package.folder)
    extra: list[str] = []
    if case == "no_labeled_case":
        data = write_case_list(tmp_path / "data", 2, labeled=False)
    elif case == "label_geometry":
        data = write_case_list(tmp_path / "data", 1, label_spacing=(2.0, 2.0, 2.5))
    elif case == "data_lacks_modality":
        data = write_case_list(tmp_path / "data", 1, drop=("venous",))
    else:
        data = write_case_list(tmp_path / "data", 1)
    extra = {"missing_unknown": ["--missing", "portal"],
             "missing_every_modality": ["--missing", "arterial", "venous"],
             "bad_region": ["--region", "whole tumor"],
             "unknown_region_value": ["--region", "enhancing=4"]}.get(case, [])
    code, lines = run_cli(capsys, "evaluate", "--model", model, "--data", str(data), "--output",
                          str(tmp_path / "out"), "--device", "cpu", *extra)
    assert code == 2
    assert lines[-1]["event"] == "error"
    assert message in lines[-1]["message"]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_api_refuses_unknown_modalities_and_missing_on_a_dtc_model(tiny_maml_package, tiny_dtc_package, tmp_path):
    from MultiModalSegLib.datasets import load_cases

    cases = load_cases(str(write_case_list(tmp_path / "data", 1, extra="t1")))
    with pytest.raises(MultiModalSegError, match="has the modality t1, which model 'tiny-maml' does not know"):
        evaluate_model(tiny_maml_package, cases, device="cpu")
    with pytest.raises(MultiModalSegError, match="no cases"):
        evaluate_model(tiny_maml_package, [], device="cpu")
    with pytest.raises(MultiModalSegError, match="needs every modality"):
        evaluate_model(tiny_dtc_package, cases, missing=["mri"], device="cpu")


def test_manifest_regions_other_grids_and_the_callers_network(tmp_path):
    """BraTS-style regions from the manifest; the reference modality left out while the other lies on
    another grid (the prediction is resampled onto the label's grid); a training network keeps its mode."""
    from tiny_packages import make_tiny_maml, tiny_maml_manifest

    from MultiModalSegLib.datasets import Case
    from MultiModalSegLib.weights import save_model_package

    manifest = tiny_maml_manifest("tiny-maml-regions")
    manifest["regions"] = [{"name": "liver and tumor", "values": [1, 2]}]
    package = save_model_package(make_tiny_maml(), manifest, tmp_path / "package")
    label = rule_label(1)
    label[0, 0, 0] = 3  # a value the model does not know
    phases = phases_for(rule_label(1), 1)
    arterial = to_image(phases["arterial"][:7, :13, :13].copy(), spacing=(2.5, 2.5, 2.5), origin=(0.5, -0.5, 0.0))
    case = Case("c", {"arterial": arterial, "venous": to_image(phases["venous"])}, to_image(label), "in code")
    network = package.build_network("cpu").train()
    result = evaluate_model(package, [case], missing=["venous"], device="cpu", network=network, bootstrap=20)
    assert network.training
    assert result.available == ["arterial"]
    assert result.cases[0]["resampled_prediction"] and result.cases[0]["reference_modality"] == "arterial"
    assert [row.label for row in result.rows] == ["liver", "tumor", "liver and tumor"]
    assert result.rows[2].kind == "region" and result.rows[2].values == (1, 2)
    assert result.rows[0].reference_voxels == np.count_nonzero(label == 1)
    assert result.rows[0].spacing_mm == (SPACING,) * 3
    assert any("value(s) [3]" in warning for warning in result.warnings)
    assert result.mean("liver and tumor", "dice") == result.rows[2].dice


def test_an_empty_prediction_of_an_empty_reference_is_said_in_the_summary():
    """Issue 11, item 6: Dice 1.0 for "nothing predicted where there is nothing" must not pass unsaid.

    Case a has no tumour and none is predicted (Dice 1.0 by convention); case b has one. The
    summary counts case a for the tumour, says its Dice is 1.0 and that it is not in the means.
    """
    from MultiModalSegLib.evaluation import EvaluationResult, summarize

    regions = regions_for_labels([{"value": 1, "name": "liver"}, {"value": 2, "name": "tumor"}])
    with_tumour = rule_label(1)
    without_tumour = np.where(with_tumour == 2, 1, with_tumour).astype(np.uint8)
    rows = (case_metrics("a", without_tumour, without_tumour, (SPACING,) * 3, regions)
            + case_metrics("b", with_tumour, with_tumour, (SPACING,) * 3, regions))
    empty = next(row for row in rows if row.case_id == "a" and row.label == "tumor")
    assert empty.dice == 1.0 and empty.predicted_empty and empty.reference_empty
    summary = summarize(rows, regions, resamples=50)
    tumour = summary[1]
    assert (tumour.n_both_empty, tumour.n_reference_empty, tumour.metrics["dice"].n) == (1, 1, 1)
    assert summary[0].n_both_empty == 0
    result = EvaluationResult(model={"id": "m", "version": 1, "method": "maml"}, data=None, missing=[],
                              available=["venous"], regions=regions, rows=rows, summary=summary,
                              statistics={"alpha": 0.05, "resamples": 50, "seed": 0})
    markdown = result.markdown()
    assert ("tumor: 1 case(s) with neither a reference nor a predicted tumor; their Dice is 1.0 by convention "
            "(per_case.csv) and is not in the means above.") in markdown
    assert "both empty (Dice 1.0, not averaged)" in markdown
    assert result.to_dict()["labels"][1]["n_both_empty"] == 1
