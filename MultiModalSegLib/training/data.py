"""From a data spec to what a training run needs: split cases, label and modality tables.

* :func:`split_cases`: labeled cases for training, held-out labeled cases for validation,
  unlabeled cases (no label, or beyond ``--labeled N``). The split is deterministic: the
  validation cases are the *last* labeled cases in the source's order (so ``--labeled N``
  and the validation set never overlap and a resumed run sees the same split).
* :class:`LabelTable`: the label values found in the data (or named by the model), their
  names and colours, and the value -> class-index mapping the networks train on.
* :class:`ModalityTable`: modality names in channel order, each one's intensity
  normalisation (``ct`` or ``mr``) and filename patterns for the manifest, and the
  reference modality whose grid everything is resampled onto.

The arrays themselves are made by the data layer (``sampling.prepare_case``) and sampled by
its ``TwoStreamBatchLoader``; this module only decides *which* cases and *what* they mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    from MultiModalSegLib.datasets import Case

# A colour per class index for labels that come without one (Slicer-like, readable on grey).
DEFAULT_COLORS = [
    [0.86, 0.55, 0.39], [0.90, 0.20, 0.20], [0.30, 0.69, 0.29], [0.22, 0.49, 0.72],
    [0.60, 0.31, 0.64], [1.00, 0.50, 0.00], [0.90, 0.80, 0.20], [0.65, 0.34, 0.16],
]
CT_MODALITY_WORDS = ("ct", "arterial", "venous", "portal", "delayed", "native", "plain", "nc", "hu")


@dataclass
class LabelTable:
    """Foreground labels in class-index order: class ``i + 1`` is ``values[i]``."""

    values: list[int]
    names: list[str]
    colors: list[list[float]]

    @property
    def num_foreground(self) -> int:
        return len(self.values)

    def manifest_labels(self) -> list[dict[str, Any]]:
        return [{"value": int(v), "name": n, "color": [round(float(c), 4) for c in color]}
                for v, n, color in zip(self.values, self.names, self.colors)]

    def to_class_indices(self, label: np.ndarray) -> np.ndarray:
        """Stored label values -> class indices ``uint8`` (0 background; unknown values -> 0)."""
        lookup = np.zeros(max(self.values + [0]) + 1, dtype=np.uint8)
        for index, value in enumerate(self.values, start=1):
            lookup[value] = index
        label = np.asarray(label)
        clipped = np.where((label >= 0) & (label < lookup.size), label, 0).astype(np.int64)
        return lookup[clipped]

    @classmethod
    def from_manifest(cls, labels: list[dict[str, Any]]) -> LabelTable:
        return cls(values=[int(entry["value"]) for entry in labels],
                   names=[str(entry["name"]) for entry in labels],
                   colors=[list(entry.get("color") or DEFAULT_COLORS[i % len(DEFAULT_COLORS)])
                           for i, entry in enumerate(labels)])


@dataclass
class ModalityTable:
    """Modalities in channel order with normalisation scheme, name patterns and the reference."""

    names: list[str]
    normalization: dict[str, str]
    reference: str
    patterns: dict[str, list[str]] = field(default_factory=dict)

    def manifest_modalities(self) -> list[dict[str, Any]]:
        return [{"name": name, "patterns": self.patterns.get(name, [f"*{name}*"]),
                 "normalization": self.normalization[name]} for name in self.names]

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ModalityTable:
        entries = manifest["modalities"]
        names = [m["name"] for m in entries]
        return cls(names=names, normalization={m["name"]: m.get("normalization", "none") for m in entries},
                   reference=str(manifest.get("reference_modality") or names[0]),
                   patterns={m["name"]: list(m.get("patterns", [])) for m in entries})


def _phantom_kind(spec: str) -> Any | None:
    if not str(spec).startswith("phantom:"):
        return None
    name = str(spec)[len("phantom:"):].split(":")[0].split("?")[0]
    try:
        from MultiModalSegLib.phantoms import PHANTOM_KINDS
    except ImportError:  # pragma: no cover
        return None
    kind = PHANTOM_KINDS.get(name) if isinstance(PHANTOM_KINDS, dict) else None
    return kind if hasattr(kind, "labels") else None


def _dataset_json(spec: str) -> dict[str, Any] | None:
    """nnU-Net's ``dataset.json`` of a folder spec, or the object of a case-list ``.json`` (its ``labels``)."""
    path = Path(str(spec).rsplit(":", 1)[0] if str(spec).endswith((":train", ":test", ":all")) else str(spec))
    if path.name in ("imagesTr", "imagesTs"):
        path = path.parent
    candidate = path if path.suffix.lower() == ".json" else path / "dataset.json"
    if candidate.is_file():
        try:
            value = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None
    return None


def describe_labels(spec: str, values: list[int]) -> LabelTable:
    """Names and colours for the label ``values`` found in the data.

    From the phantom kind, from nnU-Net's ``dataset.json`` ``labels`` (or the ``labels`` of a
    case-list ``.json`` of the form ``{"cases": [...], "labels": {"liver": 1}}``), BraTS
    conventions for BraTS values, else ``label_<value>``.
    """
    names: dict[int, str] = {}
    colors: dict[int, list[float]] = {}
    kind = _phantom_kind(spec)
    if kind is not None:
        names = {int(v): n for n, v in kind.labels.items() if int(v) != 0}
        colors = {int(v): [c / 255.0 for c in rgb] for v, rgb in getattr(kind, "label_colors", {}).items()}
    else:
        dataset = _dataset_json(spec)
        if dataset and isinstance(dataset.get("labels"), dict):
            for key, value in dataset["labels"].items():
                # nnU-Net v2: {"liver": 1}; v1: {"1": "liver"}
                if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and not key.isdigit()):
                    names[int(value)] = str(key)
                elif key.isdigit():
                    names[int(key)] = str(value)
        elif set(values) <= {1, 2, 4} and len(values) >= 2:
            names = {1: "necrosis", 2: "edema", 4: "enhancing"}
    if not values:
        raise MultiModalSegError("No labeled case has any foreground; training needs labeled cases with a structure.")
    return LabelTable(values=list(values), names=[names.get(v, f"label_{v}") for v in values],
                      colors=[colors.get(v, DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i, v in enumerate(values)])


def guess_normalization(name: str, spec: str) -> str:
    """``ct`` for CT phases (by kind or name: arterial, venous, ct ...), else ``mr`` (z-score in the body)."""
    kind = _phantom_kind(spec)
    if kind is not None:
        return "ct" if kind.name.endswith("-ct") or kind.name.endswith("-ct2") else "mr"
    words = name.lower().replace("-", "_").split("_")
    return "ct" if any(word in CT_MODALITY_WORDS for word in words) else "mr"


def describe_modalities(spec: str, cases: list[Case], wanted: list[str] | None = None) -> ModalityTable:
    """The modalities of the data (the first case's order, or ``wanted``) and the reference."""
    names = list(wanted) if wanted else list(cases[0].images)
    kind = _phantom_kind(spec)
    if kind is not None and getattr(kind, "reference_modality", None) in names:
        reference = kind.reference_modality
    else:
        reference = names[0]
    return ModalityTable(names=names, normalization={n: guess_normalization(n, spec) for n in names},
                         reference=reference, patterns={n: [f"*{n}*"] for n in names})


@dataclass
class CaseSplit:
    """Which case trains labeled, which trains unlabeled, which validates."""

    labeled: list[Case]
    unlabeled: list[Case]
    validation: list[Case]

    def summary(self) -> dict[str, list[str]]:
        return {"labeled": [c.case_id for c in self.labeled], "unlabeled": [c.case_id for c in self.unlabeled],
                "validation": [c.case_id for c in self.validation]}


def split_cases(cases: list[Case], labeled_limit: int | None = None, validation_count: int | None = None) -> CaseSplit:
    """Deterministic split: the last labeled cases validate, the first ``labeled_limit`` of the rest train labeled.

    ``labeled_limit`` (DTC's ``--labelnum``): only the first N remaining labeled cases keep
    their label; later ones train as unlabeled (their label is not used). ``validation_count``
    None holds out 20 % of the labeled cases (at least 1, none when fewer than 2 are labeled).
    """
    from dataclasses import replace

    labeled = [c for c in cases if c.is_labeled]
    unlabeled = [c for c in cases if not c.is_labeled]
    if not labeled:
        raise MultiModalSegError(
            "None of the cases has a label; training needs at least one labeled case (a label map next to the "
            "images).")
    if validation_count is None:
        validation_count = max(1, round(0.2 * len(labeled))) if len(labeled) >= 2 else 0
    if validation_count >= len(labeled):
        raise MultiModalSegError(
            f"Holding out {validation_count} validation case(s) leaves no labeled case to train on "
            f"({len(labeled)} labeled); lower --validation-cases or add labeled cases.")
    validation = labeled[len(labeled) - validation_count:] if validation_count else []
    train_labeled = labeled[:len(labeled) - validation_count]
    if labeled_limit is not None:
        if labeled_limit < 1:
            raise MultiModalSegError("--labeled must be at least 1: training needs a labeled case.")
        unlabeled = [replace(c, label=None) for c in train_labeled[labeled_limit:]] + unlabeled
        train_labeled = train_labeled[:labeled_limit]
    return CaseSplit(labeled=train_labeled, unlabeled=unlabeled, validation=validation)
