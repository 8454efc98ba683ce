"""Which files to segment, case by case, when ``mmseg predict --data SPEC`` runs over a data set.

The data specs are those of ``train`` and ``evaluate`` (:mod:`MultiModalSegLib.datasets`): an
nnU-Net raw folder (``DIR`` = ``imagesTr``, ``DIR:test`` or ``DIR/imagesTs``, ``DIR:all``), a
case-list ``.json``, and a folder of case folders. A case folder is read by its BraTS names
(``CASE/CASE_<modality>.nii.gz``) when they name every modality of the model, else by the
manifest's name patterns, as the Slicer panel matches volumes (:mod:`MultiModalSegLib.case_folder`),
so ``PAT01/arterial.nii.gz`` + ``PAT01/PV.nrrd`` or DICOM sub-folders work too.

Nothing is read here. A case that cannot be segmented as listed (a missing modality the
model needs, two files for one modality, a case id that cannot be a folder name) carries a
``problem`` sentence instead of failing the whole data set: the batch reports it and goes on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from MultiModalSegLib.errors import MultiModalSegError

__all__ = ["PredictionCase", "list_prediction_cases"]

_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class PredictionCase:
    """One case to segment: its id, the input file of each modality, and what stands in the way.

    ``matching`` says how the files were found (``nnU-Net channels``, ``case list``, ``file
    names`` or ``name patterns``); ``missing`` names modalities left out (MAML with
    ``--allow-missing``); ``problem`` is a sentence when the case cannot be segmented.
    """

    case_id: str
    source: str
    inputs: dict[str, Path] = field(default_factory=dict)
    matching: str = ""
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    problem: str | None = None


def _supports_missing(manifest: Mapping[str, Any]) -> bool:
    return bool(manifest.get("supports_missing_modalities", False))


def _modality_names(manifest: Mapping[str, Any]) -> list[str]:
    return [entry if isinstance(entry, str) else str(entry["name"]) for entry in manifest.get("modalities") or []]


def _from_named_files(listed: Any, manifest: Mapping[str, Any], allow_missing: bool, matching: str
                      ) -> PredictionCase:
    """A listed case (``datasets.CaseFiles``) whose files are named by modality, mapped onto the model's."""
    from MultiModalSegLib.datasets import match_modality_name

    case = PredictionCase(listed.case_id, listed.source, matching=matching)
    keys = {}
    for name in _modality_names(manifest):
        key = match_modality_name(name, listed.image_paths)
        if key is None:
            case.missing.append(name)
        else:
            keys[key] = name
            case.inputs[name] = listed.image_paths[key]
    case.unused = [path.name for key, path in listed.image_paths.items() if key not in keys]
    if listed.problem is not None:
        case.problem = listed.problem
    elif case.missing and not (allow_missing and _supports_missing(manifest)):
        case.problem = listed.missing_files or (
            f"Case '{listed.case_id}' ({listed.source}) has no {', '.join(case.missing)} image; model "
            f"'{manifest.get('id')}' needs {', '.join(_modality_names(manifest))}. Add the missing modality"
            + (", or pass --allow-missing to segment without it." if _supports_missing(manifest) else "."))
    elif not case.inputs:
        case.problem = (f"Case '{listed.case_id}' ({listed.source}) has no image of any modality of model "
                        f"'{manifest.get('id')}' ({', '.join(_modality_names(manifest))}); check the file names.")
    return case


def _from_case_folder(folder: Path, manifest: Mapping[str, Any], allow_missing: bool) -> PredictionCase | None:
    """A sub-folder of a folder of cases; None when it holds no image at all (it is not a case)."""
    from MultiModalSegLib.case_folder import candidate_inputs, match_case_folder
    from MultiModalSegLib.datasets import brats_case_files, match_modality_name

    brats = brats_case_files(folder)
    names = _modality_names(manifest)
    if brats is not None and all(match_modality_name(name, brats.image_paths) for name in names):
        return _from_named_files(brats, manifest, allow_missing, "file names")
    candidates = candidate_inputs(folder)
    if not candidates:
        return None
    case = PredictionCase(folder.name, str(folder), matching="name patterns")
    try:
        found = match_case_folder(folder, manifest, allow_missing, candidates=candidates)
    except MultiModalSegError as error:
        case.problem = str(error)
        return case
    case.inputs, case.missing = dict(found.inputs), list(found.missing)
    case.unused = [path.name for path in found.unused]
    return case


def list_prediction_cases(spec: str, manifest: Mapping[str, Any], allow_missing: bool = False
                          ) -> list[PredictionCase]:
    """The cases of ``spec`` with each one's input files for the model of ``manifest``, in the data's order.

    Raises:
        MultiModalSegError: the spec names nothing readable (a wrong path, an unreadable
            dataset.json or case list, a phantom spec), or holds no case.
    """
    from MultiModalSegLib.datasets import data_spec_kind, list_case_files

    spec = str(spec).strip()
    if spec.startswith("phantom:"):
        raise MultiModalSegError(
            "predict --data reads cases from files; write the phantoms to a folder first (mmseg demo, or "
            "datasets.write_cases_nnunet) and give that folder.")
    kind, path, _ = data_spec_kind(spec)
    if kind == "folder":
        cases = [case for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
                 if (case := _from_case_folder(folder, manifest, allow_missing)) is not None]
    else:
        matching = "case list" if kind == "json" else "nnU-Net channels"
        cases = [_from_named_files(listed, manifest, allow_missing, matching) for listed in list_case_files(spec)]
    if not cases:
        raise MultiModalSegError(
            f"'{spec}' holds no cases; check the layout (nnU-Net imagesTr/imagesTs with dataset.json, one folder "
            "per case, or a case-list .json).")
    seen: set[str] = set()
    for case in cases:
        if case.problem is None and not _FOLDER_NAME.match(case.case_id):
            case.problem = (f"The case id '{case.case_id}' cannot be a folder name; use letters, digits, '.', '_' "
                            "and '-' only.")
        elif case.problem is None and case.case_id in seen:
            case.problem = (f"The case id '{case.case_id}' appears twice in {spec}; give every case its own id "
                            "(its first occurrence is segmented).")
        seen.add(case.case_id)
    return cases
