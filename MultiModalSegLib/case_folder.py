"""One case folder -> one input per modality, picked by the manifest's name patterns.

``mmseg predict --case FOLDER`` and ``mmseg predict --data DIR`` over a folder of case
folders read cases whose files carry no agreed names (``PAT01/arterial_phase.nii.gz``,
``PAT01/PV.nrrd``, ``PAT01/T1/`` as a DICOM series). Each image file (NIfTI, NRRD, MetaImage)
and each sub-folder (a DICOM series) is a candidate; label maps (a name ending in ``seg``,
``label``, ``labels`` or ``segmentation``) are not. A candidate's name is its file name
without the image extension and without a leading ``<folder name>_`` or ``<folder name>-``,
so a case id that happens to contain a pattern (``art_study_07``) does not match every file.

The rules are the panel's (:mod:`MultiModalSegLib.modality_matching`): the manifest's patterns
plus ``*<modality>*``, case-insensitive, the more specific pattern winning (``case_t1ce`` is
T1ce, not T1). On top of that a folder is refused with a sentence, never guessed, when a
modality's patterns match two candidates that no other modality took (``a_t1`` and
``b_t1``), or match none (unless ``allow_missing`` and the model handles missing modalities,
as MAML does).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from MultiModalSegLib.datasets import strip_image_suffix
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.modality_matching import (
    ModalitySpec,
    VolumeEntry,
    match_volumes_to_modalities,
    modality_specs_from_manifest,
)

__all__ = ["FolderMatch", "LABEL_NAME_ENDINGS", "candidate_inputs", "input_name", "inputs_for_case_folder",
           "match_case_folder"]

LABEL_NAME_ENDINGS = ("seg", "label", "labels", "segmentation")
"""A candidate whose name ends in one of these (after ``_``, ``-`` or ``.``) is a label map, not an input."""


@dataclass
class FolderMatch:
    """What :func:`match_case_folder` found: each modality's input, and what was left over."""

    folder: Path
    inputs: dict[str, Path]
    missing: list[str] = field(default_factory=list)
    unused: list[Path] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: ``{"case": ..., "inputs": {modality: file name}, "missing": [...], "unused": [...]}``."""
        return {"case": self.folder.name, "folder": str(self.folder),
                "inputs": {name: path.name for name, path in self.inputs.items()},
                "missing": list(self.missing), "unused": [path.name for path in self.unused]}


def input_name(path: Path, case_name: str) -> str:
    """The name the patterns see: file name without extension and without a leading ``<case>_``."""
    stem = path.name if path.is_dir() else (strip_image_suffix(path.name) or path.name)
    for separator in ("_", "-"):
        prefix = case_name + separator
        if case_name and stem.lower().startswith(prefix.lower()) and len(stem) > len(prefix):
            return stem[len(prefix):]
    return stem


def _is_label_name(name: str) -> bool:
    lowered = name.lower()
    return any(lowered == ending or lowered.endswith(tuple(sep + ending for sep in "_-."))
               for ending in LABEL_NAME_ENDINGS)


def candidate_inputs(folder: Path) -> list[Path]:
    """Image files and sub-folders (DICOM series) of ``folder`` that could be inputs, sorted by name."""
    candidates = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() or (path.is_file() and strip_image_suffix(path.name) is not None):
            if not _is_label_name(input_name(path, folder.name)):
                candidates.append(path)
    return candidates


def _matches(name: str, spec: ModalitySpec) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in spec.all_patterns())


def match_case_folder(folder: str | Path, manifest: Mapping[str, Any], allow_missing: bool = False,
                      candidates: Sequence[Path] | None = None) -> FolderMatch:
    """Pick each modality's input in ``folder`` by the manifest's patterns.

    Args:
        folder: the case folder.
        manifest: the model's manifest (``modalities`` with ``patterns``,
            ``supports_missing_modalities``, ``id``).
        allow_missing: a modality nothing matches is left out instead of refused; only for
            models that handle missing modalities (MAML).
        candidates: the candidates to match (default :func:`candidate_inputs`).

    Raises:
        MultiModalSegError: the folder does not exist, a modality's patterns match two
            candidates, or none (without ``allow_missing``), or nothing matches at all.
    """
    folder = Path(folder)
    model = manifest.get("id", "the model")
    if not folder.is_dir():
        raise MultiModalSegError(f"The case folder {folder} does not exist or is not a folder; give a folder that "
                                 "holds one image per modality.")
    specs = modality_specs_from_manifest(manifest)
    if allow_missing and not manifest.get("supports_missing_modalities", False):
        raise MultiModalSegError(
            f"Model '{model}' needs every modality, so --allow-missing cannot apply; add the missing images or "
            "pick a MAML model, which handles missing modalities.")
    paths = list(candidates) if candidates is not None else candidate_inputs(folder)
    names = {str(index): input_name(path, folder.name) for index, path in enumerate(paths)}
    assigned = match_volumes_to_modalities([VolumeEntry(key, name) for key, name in names.items()], specs)
    taken = {key for key in assigned.values() if key is not None}
    listing = ", ".join(path.name for path in paths) or "nothing"
    inputs: dict[str, Path] = {}
    missing: list[str] = []
    for spec in specs:
        key = assigned[spec.name]
        own = [k for k, name in names.items() if _matches(name, spec) and (k == key or k not in taken)]
        if len(own) > 1:
            files = " and ".join(paths[int(k)].name for k in own)
            raise MultiModalSegError(
                f"In {folder}, {files} both match the '{spec.name}' modality of model '{model}'; keep one of them "
                f"in the folder, or name the inputs yourself with --input {spec.name}=FILE.")
        if key is None:
            if not allow_missing:
                patterns = ", ".join(spec.all_patterns())
                hint = (" or pass --allow-missing to segment without it"
                        if manifest.get("supports_missing_modalities", False) else "")
                raise MultiModalSegError(
                    f"No image in {folder} matches the '{spec.name}' modality of model '{model}' (patterns "
                    f"{patterns}; the folder holds {listing}); rename its file so it matches{hint}, or name the "
                    f"inputs yourself with --input {spec.name}=FILE.")
            missing.append(spec.name)
            continue
        inputs[spec.name] = paths[int(key)]
    if not inputs:
        raise MultiModalSegError(
            f"No image in {folder} matches any modality of model '{model}' (the folder holds {listing}); rename "
            "the files after their modality or name the inputs with --input.")
    unused = [path for index, path in enumerate(paths) if str(index) not in taken]
    return FolderMatch(folder=folder, inputs=inputs, missing=missing, unused=unused)


def inputs_for_case_folder(model: str | Path, folder: str | Path, allow_missing: bool, reporter: Any
                           ) -> dict[str, Path]:
    """``mmseg predict --case FOLDER``: each modality's file, announced as an ``inputs`` event.

    Only the manifest is read here (the weights are verified when the network is loaded).
    """
    from MultiModalSegLib.weights import load_model_package

    package = load_model_package(model, verify=False)
    found = match_case_folder(folder, package.manifest, allow_missing)
    reporter.emit("inputs", **found.describe())
    return dict(found.inputs)
