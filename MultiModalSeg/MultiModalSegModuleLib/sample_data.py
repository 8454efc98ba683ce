"""The bundled sample cases: which files, which modalities, which node names.

The files live in ``Resources/SampleData/`` as ``<sample name>_<modality>.nrrd`` (small
phantom volumes made by ``MultiModalSegLib.phantoms``), with an optional thumbnail
``<sample name>.png``. The module registers each case with Slicer's SampleData module
(category "MultiModalSeg"); the self-tests load the same files. Node names equal the file
stems, so the bundled models' name patterns (``*art*``, ``*ven*``, ``*t1ce*``, ...) match
them and the panel fills its inputs by itself.

SampleData copies each file into its cache folder and, without a checksum, reuses a cached file
of the same name for ever: after an update of the extension users would get the old phantoms.
So every file is registered with ``checksums="SHA256:<digest>"`` (the SampleData API of Slicer
5.10 and 5.12); SampleData then recomputes the cached file's digest and copies the file again
when it differs. The digest is computed from the bundled file when the module registers the
samples (a few MB, milliseconds), so it always describes the file that ships.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SAMPLE_DATA_CATEGORY",
    "SampleCase",
    "SAMPLE_CASES",
    "sample_case_by_name",
    "expected_sample_file_names",
    "sha256_checksum",
    "sample_data_source_arguments",
]

SAMPLE_DATA_CATEGORY = "MultiModalSeg"


@dataclass(frozen=True)
class SampleCase:
    """One sample case: a name, a description for the SampleData panel and its modalities."""

    sample_name: str
    description: str
    modalities: tuple[str, ...]

    def node_name(self, modality: str) -> str:
        return f"{self.sample_name}_{modality}"

    def file_name(self, modality: str) -> str:
        return f"{self.node_name(modality)}.nrrd"

    def files(self, sample_data_dir: str | Path) -> dict[str, Path]:
        """Each modality's file in ``sample_data_dir`` (whether it exists or not)."""
        folder = Path(sample_data_dir)
        return {modality: folder / self.file_name(modality) for modality in self.modalities}

    def thumbnail(self, sample_data_dir: str | Path) -> Path:
        return Path(sample_data_dir) / f"{self.sample_name}.png"

    def is_available(self, sample_data_dir: str | Path) -> bool:
        """True when every modality's file is present."""
        return all(path.is_file() for path in self.files(sample_data_dir).values())


SAMPLE_CASES = (
    SampleCase("MultiModalSegLiverPhantom", "Liver CT phantom\n(arterial + venous)", ("arterial", "venous")),
    SampleCase("MultiModalSegBrainPhantom", "Brain MR phantom\n(T1, T1ce, T2, FLAIR)", ("t1", "t1ce", "t2", "flair")),
)
"""The two-phase CT case (for the MAML liver model) and the four-sequence MR case."""


def sample_case_by_name(sample_name: str) -> SampleCase:
    for case in SAMPLE_CASES:
        if case.sample_name == sample_name:
            return case
    raise KeyError(f"No sample case '{sample_name}'; the cases are {', '.join(c.sample_name for c in SAMPLE_CASES)}.")


def expected_sample_file_names() -> list[str]:
    """Every file name ``Resources/SampleData/`` is expected to hold (thumbnails are optional)."""
    return [case.file_name(modality) for case in SAMPLE_CASES for modality in case.modalities]


def sha256_checksum(path: str | Path) -> str:
    """``SHA256:<hex digest>``, the checksum format of SampleData (``slicer.util.extractAlgoAndDigest``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return f"SHA256:{digest.hexdigest()}"


def sample_data_source_arguments(case: SampleCase, sample_data_dir: str | Path,
                                 fallback_thumbnail: str | Path) -> dict[str, Any]:
    """The keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` for ``case``."""
    files = case.files(sample_data_dir)
    thumbnail = case.thumbnail(sample_data_dir)
    return {
        "category": SAMPLE_DATA_CATEGORY,
        "sampleName": case.sample_name,
        "uris": [path.as_uri() for path in files.values()],
        "fileNames": [path.name for path in files.values()],
        "nodeNames": [case.node_name(modality) for modality in files],
        "checksums": [sha256_checksum(path) for path in files.values()],
        "thumbnailFileName": str(thumbnail if thumbnail.is_file() else fallback_thumbnail),
        "loadFileTypes": ["VolumeFile"] * len(files),
    }
