"""Training and evaluation cases: named modality images plus an optional label map.

A :class:`Case` is what every training, fine-tuning and evaluation path consumes. It is
read from one *spec* string (what the user types after ``--data``):

``DIR`` (a folder with ``dataset.json``, the nnU-Net v2 raw layout)
    ``imagesTr/CASE_0000.nii.gz`` ..., ``labelsTr/CASE.nii.gz``; ``dataset.json`` names
    the channels (``channel_names`` {"0": "arterial", ...}; nnU-Net v1's ``modality`` is
    read too) and the ``file_ending``. ``DIR`` or ``DIR:train`` reads ``imagesTr`` (a
    case whose ``labelsTr`` file is missing is unlabeled), ``DIR:test`` or
    ``DIR/imagesTs`` reads ``imagesTs`` (labels from ``labelsTs`` when that folder
    exists, else unlabeled), ``DIR:all`` reads both.
``DIR`` (a BraTS-style folder: one subfolder per case, no ``dataset.json``)
    ``CASE/CASE_t1.nii.gz``, ``CASE_t1ce``, ``CASE_t2``, ``CASE_flair``, ``CASE_seg``.
    Every image file named ``CASE_<name>`` or ``CASE-<name>`` (BraTS 2023 writes
    ``CASE-t1n``) is the modality ``<name>``; ``seg`` or ``label`` is the label map, and a
    case without one is unlabeled.
``FILE.json``
    A list of ``{"id": ..., "images": {"t1": "path", ...}, "label": "path"}`` (``label``
    absent or null: unlabeled), or ``{"cases": [...]}``, which may also name the label
    values as nnU-Net's ``dataset.json`` does (``"labels": {"liver": 1, "tumor": 2}``; training
    writes the names into the model). Relative paths are resolved against the JSON file's folder.
``phantom:KIND:N[:SEED][:APPEARANCE][?shape=ZxYxX]``
    N synthetic cases of a phantom kind (``MultiModalSegLib.phantoms.PHANTOM_KINDS``).
    Case ``i`` (0-based) is ``make_case(KIND, seed=SEED * 100000 + i)``, so
    ``phantom:atrium-mr:80`` and ``phantom:atrium-mr:80:0`` are seeds 0..79 and
    ``phantom:atrium-mr:4:1`` is seeds 100000..100003: two specs with different SEED never
    share a case while N < 100000. SEED defaults to 0 and APPEARANCE to the phantom's own
    default (e.g. ``phantom:liver-ct2:4:7:shifted``). ``?shape=24x48x48`` asks for a
    smaller grid (array order z x y x x) so tests and demos stay fast; the field of view
    is kept, so the same anatomy is drawn at another spacing: ``?shape=96x448x448`` is
    the liver phantom on a clinical 2.5 x 0.8 x 0.8 mm CT grid. ``&spacing=ZxYxX`` (mm)
    sets the voxel size too (with ``shape``, the field of view is ``shape * spacing``).

Case ids are the file stems (nnU-Net, BraTS), the JSON ``id``, or ``KIND-SEED`` for
phantoms. Images are read eagerly (the training loop converts them to arrays once).

:func:`validate_training_cases` holds every guard a training run needs (modalities,
labels present and non-empty, label geometry equal to its reference image);
:func:`write_cases_nnunet` and :func:`write_cases_json` export cases (the Slicer
fine-tune export writes corrected cases with them).

This module imports no torch: reading and checking data stays light.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from MultiModalSegLib.errors import MultiModalSegError

__all__ = [
    "PHANTOM_SEED_STRIDE",
    "Case",
    "CaseFiles",
    "brats_case_files",
    "data_spec_kind",
    "list_case_files",
    "match_modality_name",
    "strip_image_suffix",
    "dataset_label_names",
    "geometry_difference",
    "label_values_of",
    "load_cases",
    "validate_training_cases",
    "write_cases_json",
    "write_cases_nnunet",
]

PHANTOM_SEED_STRIDE = 100_000
"""Case ``i`` of ``phantom:KIND:N:SEED`` uses seed ``SEED * PHANTOM_SEED_STRIDE + i``."""

NNUNET_SPLITS = ("train", "test", "all")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
BRATS_LABEL_NAMES = ("seg", "label")
BRATS_LABELS: tuple[tuple[frozenset[str], dict[int, str]], ...] = (
    (frozenset({"t1", "t1ce", "t2", "flair"}), {1: "necrotic_core", 2: "edema", 4: "enhancing_tumor"}),
    (frozenset({"t1n", "t1c", "t2w", "t2f"}), {1: "necrotic_core", 2: "edema", 3: "enhancing_tumor"}),
)
"""BraTS sequence names (2018-2021, 2023) and the label names of BraTS' values in that edition."""


@dataclass
class Case:
    """One case: images by modality name, an optional label map, and where it came from.

    ``label`` holds the label values as stored in the file (e.g. BraTS 0, 1, 2, 4);
    mapping to class indices happens at sampling time. ``source`` is a path or spec
    that lets a user find the case again in error messages and reports.
    """

    case_id: str
    images: dict[str, sitk.Image]
    label: sitk.Image | None
    source: str

    @property
    def is_labeled(self) -> bool:
        """True when the case has a label map (it can train supervised losses)."""
        return self.label is not None

    @property
    def modalities(self) -> list[str]:
        """Modality names in the order the case holds them."""
        return list(self.images)


# --------------------------------------------------------------------------- reading


def _read(path: Path, what: str) -> sitk.Image:
    """Read one image file, turning a missing file into a user error that names the case."""
    from MultiModalSegLib.imageio import read_image

    if not path.is_file():
        raise MultiModalSegError(f"The {what} file {path} does not exist; fix the path or add the file.")
    return read_image(path)


def strip_image_suffix(name: str) -> str | None:
    """File name without its image extension, or None when it is not an image file."""
    lowered = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return None


def match_modality_name(name: str, available: Iterable[str]) -> str | None:
    """The key of ``available`` that is the modality ``name``: exact first, else case-insensitive when unique.

    (``FLAIR`` in a file finds a model's ``flair``.) None when there is no such key.
    """
    keys = list(available)
    if name in keys:
        return name
    matches = [key for key in keys if key.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _select_modalities(case_id: str, available: Mapping[str, Path | sitk.Image], wanted: Sequence[str] | None,
                       source: str) -> list[tuple[str, str]]:
    """Pairs (requested name, name in the data) in the requested order (see :func:`match_modality_name`).

    The requested spelling is kept.
    """
    if wanted is None:
        return [(name, name) for name in available]
    pairs = []
    for name in wanted:
        key = match_modality_name(name, available)
        if key is None:
            raise MultiModalSegError(
                f"Case '{case_id}' in {source} has no '{name}' image (it has {', '.join(available) or 'none'}); "
                "add the missing modality or choose a model trained on the modalities you have.")
        pairs.append((name, key))
    return pairs


@dataclass
class CaseFiles:
    """One case as the files a spec names, before any image is read.

    ``image_paths`` maps the modality names the data use (nnU-Net channel names, BraTS file
    suffixes, JSON keys) to files that exist or not; ``problem`` is a sentence when the
    listing already shows the case cannot be used as it is (a channel dataset.json does not
    name), ``missing_files`` one when files of named modalities are absent (an nnU-Net
    channel), which a model that handles missing modalities may still segment.
    """

    case_id: str
    image_paths: dict[str, Path]
    label_path: Path | None
    source: str
    problem: str | None = None
    missing_files: str | None = None

    def read(self, modalities: Sequence[str] | None) -> Case:
        """Read the images (``modalities`` of them, in that order; None: all) and the label."""
        for sentence in (self.missing_files, self.problem):
            if sentence is not None:
                raise MultiModalSegError(sentence)
        images = {name: _read(self.image_paths[key], f"'{key}' image of case '{self.case_id}'")
                  for name, key in _select_modalities(self.case_id, self.image_paths, modalities, self.source)}
        label = _read(self.label_path, f"label of case '{self.case_id}'") if self.label_path is not None else None
        return Case(case_id=self.case_id, images=images, label=label, source=self.source)


def _nnunet_channel_names(dataset_json: Path) -> tuple[dict[int, str], str]:
    try:
        description = json.loads(dataset_json.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MultiModalSegError(f"Cannot read {dataset_json} ({error}); fix the JSON or regenerate the file.")
    channels = description.get("channel_names", description.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise MultiModalSegError(
            f"{dataset_json} names no channels; add \"channel_names\": {{\"0\": \"<modality>\", ...}}.")
    try:
        names = {int(index): str(name) for index, name in channels.items()}
    except ValueError:
        raise MultiModalSegError(f"The channel_names keys in {dataset_json} must be channel numbers \"0\", \"1\", ...")
    return names, str(description.get("file_ending", ".nii.gz"))


def _list_nnunet_split(root: Path, split: str) -> list[CaseFiles]:
    """Cases of ``imagesTr`` (split "train") or ``imagesTs`` (split "test") of an nnU-Net folder."""
    channel_names, file_ending = _nnunet_channel_names(root / "dataset.json")
    images_folder = root / ("imagesTr" if split == "train" else "imagesTs")
    labels_folder = root / ("labelsTr" if split == "train" else "labelsTs")
    if not images_folder.is_dir():
        if split == "test":
            return []
        raise MultiModalSegError(f"{root} has a dataset.json but no imagesTr folder; add the training images there.")
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    files: dict[str, dict[int, Path]] = {}
    for path in sorted(images_folder.iterdir()):
        match = pattern.match(path.name)
        if match is None:
            continue
        files.setdefault(match["case"], {})[int(match["channel"])] = path
    cases = []
    for case_id, channels in files.items():
        listed = CaseFiles(case_id, {channel_names[index]: channels[index] for index in sorted(channel_names)
                                     if index in channels}, None, str(images_folder))
        missing = [f"{case_id}_{index:04d}{file_ending}" for index in channel_names if index not in channels]
        if missing:
            listed.missing_files = (
                f"Case '{case_id}' in {images_folder} lacks {', '.join(missing)} "
                f"(dataset.json names {len(channel_names)} channels); add the files or remove the case.")
        unknown = sorted(set(channels) - set(channel_names))
        if unknown:
            listed.problem = (
                f"Case '{case_id}' in {images_folder} has channel {unknown[0]:04d}, which dataset.json does not "
                "name; add it to channel_names or remove the file.")
        label_path = labels_folder / f"{case_id}{file_ending}"
        listed.label_path = label_path if label_path.is_file() else None
        cases.append(listed)
    return cases


def brats_case_files(folder: Path) -> CaseFiles | None:
    """A BraTS-style case folder (``CASE/CASE_<modality>.nii.gz``) as files; None when no file is named so."""
    case_id = folder.name
    image_paths: dict[str, Path] = {}
    label_path = None
    for path in sorted(folder.iterdir()):
        stem = strip_image_suffix(path.name)
        if stem is None or not path.is_file():
            continue
        if not stem.startswith((case_id + "_", case_id + "-")):
            continue
        name = stem[len(case_id) + 1:]
        if name.lower() in BRATS_LABEL_NAMES:
            label_path = path
        elif name:
            image_paths[name] = path
    if not image_paths:
        return None  # a subfolder without case_<modality> files is not a case
    return CaseFiles(case_id, image_paths, label_path, str(folder))


def _list_json(path: Path) -> list[CaseFiles]:
    try:
        description = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MultiModalSegError(f"Cannot read the case list {path} ({error}); fix the JSON.")
    entries = description.get("cases") if isinstance(description, dict) else description
    if not isinstance(entries, list):
        raise MultiModalSegError(
            f"{path} must hold a list of cases [{{\"id\": ..., \"images\": {{...}}, \"label\": ...}}, ...].")
    base = path.parent
    cases = []
    seen: set[str] = set()
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("images"), dict) or not entry["images"]:
            raise MultiModalSegError(
                f"Entry {number} of {path} needs an \"images\" object mapping modality names to files.")
        case_id = str(entry.get("id", entry.get("case_id", f"case_{number:03d}")))
        if case_id in seen:
            raise MultiModalSegError(f"The case id '{case_id}' appears twice in {path}; give every case its own id.")
        seen.add(case_id)
        image_paths = {str(name): base / str(file) for name, file in entry["images"].items()}
        label = entry.get("label")
        cases.append(CaseFiles(case_id, image_paths, base / str(label) if label else None, str(path)))
    return cases


def _parse_shape(text: str, spec: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise MultiModalSegError(f"The shape '{text}' in '{spec}' must be three positive sizes ZxYxX, e.g. 24x48x48.")
    return shape  # type: ignore[return-value]


def _parse_spacing(text: str, spec: str) -> tuple[float, float, float]:
    try:
        spacing = tuple(float(v) for v in text.lower().split("x"))
    except ValueError:
        spacing = ()
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise MultiModalSegError(
            f"The spacing '{text}' in '{spec}' must be three positive millimetre values ZxYxX, e.g. 2.5x0.8x0.8.")
    return spacing  # type: ignore[return-value]


def _load_phantoms(spec: str, modalities: Sequence[str] | None) -> list[Case]:
    body, _, query = spec[len("phantom:"):].partition("?")
    parts = body.split(":")
    usage = "write phantom:KIND:N[:SEED][:APPEARANCE][?shape=ZxYxX[&spacing=ZxYxX]], e.g. phantom:liver-ct2:4:0"
    if len(parts) < 2 or len(parts) > 4 or not parts[0]:
        raise MultiModalSegError(f"Cannot read the phantom spec '{spec}'; {usage}.")
    kind = parts[0]
    try:
        count = int(parts[1])
        seed = int(parts[2]) if len(parts) > 2 and parts[2] != "" else 0
    except ValueError:
        raise MultiModalSegError(f"The case count and seed in '{spec}' must be whole numbers; {usage}.")
    if count < 1 or seed < 0:
        raise MultiModalSegError(f"'{spec}' asks for {count} cases with seed {seed}; use N >= 1 and SEED >= 0.")
    if count > PHANTOM_SEED_STRIDE:
        raise MultiModalSegError(f"'{spec}' asks for more than {PHANTOM_SEED_STRIDE} cases; ask for fewer.")
    options: dict[str, object] = {}
    if len(parts) > 3 and parts[3]:
        options["appearance"] = parts[3]
    for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if key == "shape":
            options["shape"] = _parse_shape(values[-1], spec)
        elif key == "spacing":
            options["spacing"] = _parse_spacing(values[-1], spec)
        else:
            raise MultiModalSegError(
                f"Unknown option '{key}' in '{spec}'; the options are ?shape=ZxYxX and &spacing=ZxYxX (mm).")

    from MultiModalSegLib.phantoms import PHANTOM_KINDS, make_case

    if kind not in PHANTOM_KINDS:
        raise MultiModalSegError(f"Unknown phantom kind '{kind}'; use one of {', '.join(sorted(PHANTOM_KINDS))}.")
    cases = []
    for index in range(count):
        case_seed = seed * PHANTOM_SEED_STRIDE + index
        made = make_case(kind, case_seed, **options)
        case_id = f"{kind}-{case_seed}"
        images = {name: made["images"][key] for name, key in
                  _select_modalities(case_id, made["images"], modalities, spec)}
        cases.append(Case(case_id=case_id, images=images, label=made.get("label"), source=f"{spec} (seed {case_seed})"))
    return cases


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """Path and nnU-Net split of a spec: ``DIR:test`` -> (DIR, "test"); ``DIR/imagesTs`` -> (DIR, "test")."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail in NNUNET_SPLITS and head:
        return Path(head).expanduser(), tail
    path = Path(spec).expanduser()
    if path.name in ("imagesTs", "imagesTr") and (path.parent / "dataset.json").is_file():
        return path.parent, "test" if path.name == "imagesTs" else "train"
    return path, None


NNUNET_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def _refuse_nnunet_folder_without_description(path: Path, split: str | None) -> None:
    """An nnU-Net raw folder (or one of its image folders) without ``dataset.json``: name the missing file.

    Read as a folder of case folders it would hold "no cases", which does not say what is wrong.
    """
    root = path.parent if path.name in NNUNET_FOLDERS else path
    if not root.is_dir() or (root / "dataset.json").is_file():
        return
    present = [name for name in NNUNET_FOLDERS if (root / name).is_dir()]
    if present or split is not None:
        what = f"has {', '.join(present)}" if present else f"was given with :{split}"
        raise MultiModalSegError(
            f"{root} looks like an nnU-Net raw folder (it {what}) but has no dataset.json; add dataset.json with "
            "\"channel_names\" (e.g. {\"0\": \"arterial\", \"1\": \"venous\"}), \"labels\" and \"file_ending\", "
            "as nnU-Net v2 writes it.")


def data_spec_kind(spec: str) -> tuple[str, Path, str | None]:
    """What a file-based spec names: ``("json" | "nnunet" | "folder", path, nnU-Net split or None)``.

    Raises:
        MultiModalSegError: the path does not exist, or is none of the three forms.
    """
    path, split = _split_spec(spec)
    _refuse_nnunet_folder_without_description(path, split)
    if path.is_file() and path.suffix.lower() == ".json" and split is None:
        return "json", path, None
    if path.is_dir() and (path / "dataset.json").is_file():
        return "nnunet", path, split
    if path.is_dir() and split is None:
        return "folder", path, None
    if not path.exists():
        raise MultiModalSegError(
            f"'{spec}' does not exist and is not a phantom: spec; pass a dataset folder, a case-list .json "
            "or phantom:KIND:N.")
    raise MultiModalSegError(
        f"Cannot tell what '{spec}' is; pass an nnU-Net folder with dataset.json (optionally :train, :test "
        "or :all), a folder with one subfolder per case, a case-list .json, or phantom:KIND:N.")


def list_case_files(spec: str) -> list[CaseFiles]:
    """The cases a file-based spec (nnU-Net folder, BraTS-style folder, case-list .json) names, unread.

    The same cases, in the same order, as :func:`load_cases`, which reads them; a batch
    prediction lists first and reads one case at a time, so one unreadable file fails its
    case only.
    """
    kind, path, split = data_spec_kind(str(spec).strip())
    if kind == "json":
        return _list_json(path)
    if kind == "nnunet":
        splits = ["train", "test"] if split == "all" else [split or "train"]
        return [listed for name in splits for listed in _list_nnunet_split(path, name)]
    return [listed for folder in sorted(p for p in path.iterdir() if p.is_dir())
            if (listed := brats_case_files(folder)) is not None]


def load_cases(spec: str, modalities: list[str] | None = None, labeled: bool | None = None) -> list[Case]:
    """Read the cases a spec names (see the module docstring for the four spec forms).

    Args:
        spec: an nnU-Net raw folder (``DIR``, ``DIR:train``, ``DIR:test``, ``DIR:all``,
            ``DIR/imagesTs``), a BraTS-style folder, a ``.json`` case list, or
            ``phantom:KIND:N[:SEED][:APPEARANCE][?shape=ZxYxX]``.
        modalities: keep these modalities in this order (a model's modalities); each case
            must have all of them, extra images are left out. None keeps every modality.
        labeled: None keeps every case, True only cases with a label map, False only cases
            without one.

    Returns:
        the cases, sorted as the source lists them (file names sorted, JSON order, seeds).

    Raises:
        MultiModalSegError: the spec names nothing readable, a file is missing, a case lacks
            a requested modality, or no case is left.
    """
    spec = str(spec).strip()
    if not spec:
        raise MultiModalSegError("No data was given; pass a dataset folder, a case-list .json or a phantom: spec.")
    if spec.startswith("phantom:"):
        cases = _load_phantoms(spec, modalities)
    else:
        cases = [listed.read(modalities) for listed in list_case_files(spec)]
    if labeled is not None:
        cases = [case for case in cases if case.is_labeled == labeled]
    if not cases:
        which = {None: "", True: "labeled ", False: "unlabeled "}[labeled]
        raise MultiModalSegError(
            f"'{spec}' holds no {which}cases; check the folder layout (nnU-Net imagesTr/labelsTr, "
            "CASE/CASE_<modality>.nii.gz, or a case-list .json).")
    return cases


# --------------------------------------------------------------------------- label names


def _names_from_labels_entry(labels: object, where: str) -> dict[int, str]:
    """Value -> name from a ``labels`` object: nnU-Net v2 ``{"liver": 1}`` or v1 ``{"1": "liver"}``.

    Background (0) is left out; entries that are neither (nnU-Net v2 region lists) are skipped.
    """
    if not isinstance(labels, Mapping):
        raise MultiModalSegError(
            f"The \"labels\" entry of {where} must map names to values ({{\"liver\": 1}}) or values to names "
            "({\"1\": \"liver\"}); fix it or leave it out (the labels are then called label_<value>).")
    names: dict[int, str] = {}
    for key, value in labels.items():
        key = str(key)
        if isinstance(value, int) and not isinstance(value, bool):
            names[int(value)] = key
        elif isinstance(value, str) and value.isdigit() and not key.isdigit():
            names[int(value)] = key
        elif key.isdigit() and isinstance(value, str):
            names[int(key)] = value
    names.pop(0, None)
    return names


def _brats_label_names(root: Path) -> dict[int, str]:
    """BraTS names when the case folders hold BraTS sequences (2018-2021 or 2023 naming), else none."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        listed = brats_case_files(folder)
        if listed is not None:
            sequences = {name.lower() for name in listed.image_paths}
            for brats_sequences, names in BRATS_LABELS:
                if brats_sequences <= sequences:
                    return dict(names)
            return {}
    return {}


def dataset_label_names(spec: str) -> dict[int, str]:
    """The label names a data set's own description gives, by value; empty when it names none.

    From nnU-Net's ``dataset.json`` ``labels``; from a JSON case list written as
    ``{"labels": {...}, "cases": [...]}``; from a BraTS layout (case folders holding the
    BraTS sequences: BraTS' region names for its values). Never from the label values alone:
    a liver data set with values 1 and 2 is not a tumour data set.
    """
    spec = str(spec).strip()
    if spec.startswith("phantom:"):
        return {}
    path, _ = _split_spec(spec)
    if path.is_file() and path.suffix.lower() == ".json":
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}  # load_cases has said what is wrong with it
        if isinstance(description, dict) and "labels" in description:
            return _names_from_labels_entry(description["labels"], str(path))
        return {}
    if path.is_dir() and (path / "dataset.json").is_file():
        try:
            description = json.loads((path / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        labels = description.get("labels") if isinstance(description, dict) else None
        return _names_from_labels_entry(labels, str(path / "dataset.json")) if labels is not None else {}
    if path.is_dir():
        return _brats_label_names(path)
    return {}


# --------------------------------------------------------------------------- checks


def geometry_difference(image: sitk.Image, reference: sitk.Image) -> str | None:
    """Describe how ``image``'s grid differs from ``reference``'s, or None if they match.

    The decision is :func:`MultiModalSegLib.preprocessing.grid_differences` (the same
    tolerances the alignment uses); this adds the values so a user sees what is off.
    """
    from MultiModalSegLib.preprocessing import grid_differences

    if image.GetDimension() != reference.GetDimension():
        return f"{image.GetDimension()}D instead of {reference.GetDimension()}D"
    differences = grid_differences(image, reference)
    if not differences:
        return None
    getters = {"size": lambda i: tuple(i.GetSize()),
               "spacing": lambda i: tuple(round(v, 6) for v in i.GetSpacing()),
               "origin": lambda i: tuple(round(v, 4) for v in i.GetOrigin()),
               "direction": lambda i: tuple(round(v, 4) for v in i.GetDirection())}
    return "; ".join(f"{name} {getters[name](image)} instead of {getters[name](reference)}" for name in differences)


def validate_training_cases(cases: Sequence[Case], modalities: Sequence[str], require_label: bool,
                            reference: str | None = None, label_values: Iterable[int] | None = None) -> None:
    """Refuse cases a training run cannot use, with a sentence that says what to fix.

    Checks, case by case: there is at least one case; every case has exactly the model's
    ``modalities`` (none missing, none the model does not know); every case has a label
    when ``require_label``; a label is 3D, holds whole numbers, has some foreground, only
    holds the model's ``label_values`` (when given, background 0 is always allowed) and
    has the geometry (size, spacing, origin, direction) of its reference image. Images of
    other modalities may lie on other grids: training resamples them onto the reference.

    Args:
        cases: the cases to check.
        modalities: the model's modality names.
        require_label: True for supervised training (every case needs a label).
        reference: the modality whose grid the label must share; default the first of
            ``modalities`` (a model's manifest names its ``reference_modality``).
        label_values: the model's foreground label values, e.g. [1, 2, 4] for BraTS.

    Raises:
        MultiModalSegError: on the first problem found.
    """
    if not cases:
        raise MultiModalSegError("There are no cases to train on; point --data at a folder or list with cases.")
    if not modalities:
        raise MultiModalSegError("The model names no modalities; check its manifest.")
    reference = reference if reference is not None else modalities[0]
    if reference not in modalities:
        raise MultiModalSegError(
            f"The reference modality '{reference}' is not one of the model's modalities {', '.join(modalities)}.")
    allowed = None if label_values is None else {0, *(int(v) for v in label_values)}
    known = set(modalities)
    for case in cases:
        missing = [name for name in modalities if name not in case.images]
        if missing:
            raise MultiModalSegError(
                f"Case '{case.case_id}' ({case.source}) has no {', '.join(missing)} image; the model needs "
                f"{', '.join(modalities)}. Add the missing modality or leave the case out.")
        unknown = [name for name in case.images if name not in known]
        if unknown:
            raise MultiModalSegError(
                f"Case '{case.case_id}' ({case.source}) has the modality {', '.join(unknown)}, which the model does "
                f"not know (it knows {', '.join(modalities)}); rename the image or load only the model's modalities.")
        for name in modalities:
            if case.images[name].GetDimension() != 3:
                raise MultiModalSegError(
                    f"The '{name}' image of case '{case.case_id}' is {case.images[name].GetDimension()}D; "
                    "the model needs 3D volumes.")
        if case.label is None:
            if require_label:
                raise MultiModalSegError(
                    f"Case '{case.case_id}' ({case.source}) has no label map; supervised training needs one for "
                    "every case. Add the label or train semi-supervised (DTC) with the case as unlabeled.")
            continue
        difference = geometry_difference(case.label, case.images[reference])
        if difference is not None:
            raise MultiModalSegError(
                f"The label of case '{case.case_id}' ({case.source}) does not lie on the grid of its '{reference}' "
                f"image ({difference}); resample the label onto that image or fix its header.")
        values = sitk.GetArrayViewFromImage(case.label)
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
            raise MultiModalSegError(
                f"The label of case '{case.case_id}' ({case.source}) holds non-integer values; save it as a label "
                "map with whole-number labels.")
        present = np.unique(values)
        if not np.any(present != 0):
            raise MultiModalSegError(
                f"The label of case '{case.case_id}' ({case.source}) is empty (no foreground voxel); segment the "
                "structure or leave the case out (or use it as unlabeled).")
        if allowed is not None:
            stray = sorted(int(v) for v in present if int(v) not in allowed)
            if stray:
                raise MultiModalSegError(
                    f"The label of case '{case.case_id}' ({case.source}) holds the value(s) {stray}, which the model "
                    f"does not have (its labels are {sorted(allowed - {0})}); relabel the case or pick another model.")


def label_values_of(cases: Iterable[Case]) -> list[int]:
    """Sorted foreground values found in the cases' label maps (e.g. [1, 2, 4] for BraTS)."""
    values: set[int] = set()
    for case in cases:
        if case.label is not None:
            values.update(int(v) for v in np.unique(sitk.GetArrayViewFromImage(case.label)) if v != 0)
    return sorted(values)


# --------------------------------------------------------------------------- writing


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _checked_ids(cases: Sequence[Case]) -> None:
    seen: set[str] = set()
    for case in cases:
        if not _SAFE_ID.match(case.case_id):
            raise MultiModalSegError(
                f"The case id '{case.case_id}' cannot be a file name; use letters, digits, '.', '_' and '-' only.")
        if case.case_id in seen:
            raise MultiModalSegError(f"The case id '{case.case_id}' appears twice; give every case its own id.")
        seen.add(case.case_id)
    if not cases:
        raise MultiModalSegError("There are no cases to write.")


def _write(image: sitk.Image, path: Path) -> None:
    from MultiModalSegLib.imageio import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(image, path)


def write_cases_nnunet(cases: Sequence[Case], folder: str | Path, dataset_name: str,
                       label_names: Mapping[str, int] | None = None, modalities: Sequence[str] | None = None,
                       file_ending: str = ".nii.gz") -> Path:
    """Write cases as an nnU-Net v2 raw dataset that :func:`load_cases` (and nnU-Net) reads.

    Labeled cases go to ``imagesTr``/``labelsTr``, unlabeled ones to ``imagesTs`` (nnU-Net
    trains only on labeled cases); ``folder`` itself becomes the dataset folder (nnU-Net
    expects it to be called ``DatasetXXX_Name`` inside ``nnUNet_raw``).

    Args:
        cases: the cases; each must have every one of ``modalities``.
        folder: the dataset folder to create or fill.
        dataset_name: ``name`` in dataset.json.
        label_names: ``labels`` in dataset.json, name -> value, background 0 included or not;
            default ``label_<value>`` for every value found in the labels.
        modalities: channel order; default the first case's modalities.
        file_ending: ``.nii.gz`` (default) or another extension SimpleITK writes.

    Returns:
        the dataset folder.
    """
    _checked_ids(cases)
    root = Path(folder)
    modalities = list(modalities) if modalities is not None else cases[0].modalities
    if label_names is None:
        label_names = {f"label_{value}": value for value in label_values_of(cases)}
    labels = {"background": 0, **{str(name): int(value) for name, value in label_names.items() if int(value) != 0}}
    labeled = 0
    for case in cases:
        split = "Tr" if case.is_labeled else "Ts"
        for channel, name in enumerate(modalities):
            if name not in case.images:
                raise MultiModalSegError(
                    f"Case '{case.case_id}' has no '{name}' image; every case written needs {', '.join(modalities)}.")
            _write(case.images[name], root / f"images{split}" / f"{case.case_id}_{channel:04d}{file_ending}")
        if case.label is not None:
            _write(case.label, root / "labelsTr" / f"{case.case_id}{file_ending}")
            labeled += 1
    description = {
        "name": dataset_name,
        "channel_names": {str(index): name for index, name in enumerate(modalities)},
        "labels": labels,
        "numTraining": labeled,
        "file_ending": file_ending,
    }
    (root / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return root


def write_cases_json(cases: Sequence[Case], json_path: str | Path, image_folder: str | Path | None = None,
                     file_ending: str = ".nii.gz") -> Path:
    """Write each case's images and label as files plus a case-list JSON that :func:`load_cases` reads.

    Files go to ``image_folder`` (default ``<json stem>_images`` beside the JSON) as
    ``CASE_<modality>.nii.gz`` and ``CASE_label.nii.gz``; the JSON lists them relative to
    its own folder, so the pair can be moved together.

    Returns:
        the JSON path.
    """
    _checked_ids(cases)
    json_path = Path(json_path)
    base = json_path.parent
    folder = Path(image_folder) if image_folder is not None else Path(f"{json_path.stem}_images")
    folder = folder if folder.is_absolute() else base / folder
    entries = []
    for case in cases:
        entry: dict[str, object] = {"id": case.case_id, "images": {}}
        for name, image in case.images.items():
            if not re.match(r"^[A-Za-z0-9._-]+$", name):
                raise MultiModalSegError(f"The modality name '{name}' cannot be a file name; rename it.")
            path = folder / f"{case.case_id}_{name}{file_ending}"
            _write(image, path)
            entry["images"][name] = _relative(path, base)  # type: ignore[index]
        if case.label is not None:
            path = folder / f"{case.case_id}_label{file_ending}"
            _write(case.label, path)
            entry["label"] = _relative(path, base)
        entries.append(entry)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(entries, indent=2) + "\n")
    return json_path


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())
