"""The phantom cases of a paper, written once per work folder as NIfTI files with case-list JSONs.

Three disjoint phantom seed blocks (``phantom:KIND:N:BLOCK`` numbering, datasets.py): training
cases from block 1, validation cases from block 8, test cases from block 9 (the demo uses seed
2026). Every case is written once under ``DATA/cases/``; the case lists refer to those files:

Each list is ``{"cases": [...], "labels": {name: value}}`` (the phantom kind's label names).

* ``train-N.json``: the first N training cases, then the validation cases (``mmseg train
  --validation-cases V`` holds out the last V labeled cases, so every arm validates on the same
  cases, none of which it trains on);
* ``test.json``: the test cases.

Writing files (rather than passing ``phantom:`` specs) lets an arm train on the first N cases
plus the same validation block, and makes the data a plain data set for ``mmseg train``, which
plans its preprocessing from it as it would from a user's.
"""

from __future__ import annotations

import json
from pathlib import Path

from reproduction.profiles import PaperSize

from MultiModalSegLib.atomic import atomic_write_json
from MultiModalSegLib.phantoms import PHANTOM_KINDS

TRAIN_BLOCK = 1
VALIDATION_BLOCK = 8
TEST_BLOCK = 9
READY = "data.json"


def phantom_spec(size: PaperSize, count: int, block: int) -> str:
    """The ``phantom:`` spec of ``count`` cases of seed block ``block`` at the profile's grid."""
    return f"phantom:{size.kind}:{count}:{block}?shape={size.shape_text}"


def _expected(size: PaperSize) -> dict[str, object]:
    return {"train": phantom_spec(size, size.train_cases, TRAIN_BLOCK),
            "validation": phantom_spec(size, size.validation_cases, VALIDATION_BLOCK),
            "test": phantom_spec(size, size.test_cases, TEST_BLOCK)}


def prepare_data(size: PaperSize, folder: Path) -> dict[str, object]:
    """Write the cases and ``test.json`` unless ``folder`` already holds them; return ``data.json``."""
    from MultiModalSegLib.datasets import load_cases, write_cases_json

    marker = folder / READY
    expected = _expected(size)
    if marker.is_file():
        record = json.loads(marker.read_text(encoding="utf-8"))
        if record.get("specs") == expected:
            return record
        raise SystemExit(f"{folder} holds other phantom data ({record.get('specs')}); use another --work folder "
                         "or delete it.")
    print(f"writing the {size.kind} phantoms (grid {size.shape_text}) to {folder}", flush=True)
    entries: dict[str, list[dict[str, object]]] = {}
    for part, spec in expected.items():
        listing = folder / f"{part}-all.json"
        write_cases_json(load_cases(str(spec)), listing, image_folder="cases")
        entries[part] = json.loads(listing.read_text(encoding="utf-8"))
        listing.unlink()
    labels = dict(PHANTOM_KINDS[size.kind].labels)  # names the labels in the trained packages
    atomic_write_json(folder / "test.json", {"cases": entries["test"], "labels": labels})
    record = {"specs": expected, "labels": labels, "train": entries["train"], "validation": entries["validation"]}
    atomic_write_json(marker, record)
    return record


def training_list(record: dict[str, object], folder: Path, count: int) -> Path:
    """``train-<count>.json``: the first ``count`` training cases followed by the validation cases."""
    path = folder / f"train-{count}.json"
    if not path.is_file():
        train = list(record["train"])  # type: ignore[arg-type]
        atomic_write_json(path, {"cases": train[:count] + list(record["validation"]),  # type: ignore[arg-type]
                                 "labels": record["labels"]})
    return path
