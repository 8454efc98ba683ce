"""Which volume or file is which modality, and which volumes belong to the same case.

One implementation for the Slicer panel (``MultiModalSeg/MultiModalSegModuleLib/modality_matching.py``
re-exports this module) and the command line (``mmseg predict --case`` and ``--data`` over a
folder of case folders, through :mod:`MultiModalSegLib.case_folder`), so a name that the panel
assigns to a modality is assigned the same way by ``mmseg``. Pure Python: no torch, no SimpleITK.

A model's manifest lists its modalities with file-name patterns
(``{"name": "venous", "patterns": ["*ven*", "*pv*", "*portal*"]}``). The panel fills each
modality's input selector with a loaded volume whose name matches one of the patterns
(``fnmatch``, ignoring case); the modality's own name is tried as ``*<name>*`` after the
manifest's patterns. When a volume matches several modalities the more specific pattern
wins (the one with more literal characters): ``case_t1ce`` matches ``*t1*`` and ``*t1ce*``
and goes to T1ce, leaving ``case_t1`` for T1. Each volume fills at most one modality; a
modality nothing matches stays empty (allowed where the model supports missing modalities).

For fine-tuning, volumes are grouped into cases (one study each): by the study the volume
belongs to in Slicer's subject hierarchy when it has one, else by its name without the last
``_``/``-``/space-separated part (``case2_arterial`` and ``case2_venous`` form ``case2``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ModalitySpec",
    "VolumeEntry",
    "CaseCandidate",
    "modality_specs_from_manifest",
    "pattern_specificity",
    "match_volumes_to_modalities",
    "case_name_from_volume_name",
    "group_volumes_into_cases",
]


@dataclass(frozen=True)
class ModalitySpec:
    """One input channel of a model: its name and the volume-name patterns that select it."""

    name: str
    patterns: tuple[str, ...] = ()

    def all_patterns(self) -> tuple[str, ...]:
        """The manifest's patterns, then ``*<name>*``."""
        own = f"*{self.name}*"
        return self.patterns + (() if own.lower() in (p.lower() for p in self.patterns) else (own,))


@dataclass(frozen=True)
class VolumeEntry:
    """A loaded volume as the matcher sees it: an id (the MRML node id), its name, and the study
    it belongs to (empty when it is in none)."""

    volume_id: str
    name: str
    study: str = ""


@dataclass
class CaseCandidate:
    """Volumes of one case by modality (volume ids); modalities nothing matched are absent."""

    name: str
    volumes: dict[str, str] = field(default_factory=dict)


def modality_specs_from_manifest(manifest: Mapping[str, Any]) -> list[ModalitySpec]:
    """The manifest's ``modalities`` list as :class:`ModalitySpec` s, in channel order."""
    specs = []
    for entry in manifest.get("modalities") or []:
        if isinstance(entry, str):
            specs.append(ModalitySpec(entry))
        else:
            specs.append(ModalitySpec(str(entry["name"]), tuple(str(p) for p in entry.get("patterns") or ())))
    return specs


def pattern_specificity(pattern: str) -> int:
    """How many literal characters a pattern has (``*t1ce*`` -> 4): more is more specific."""
    return len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))


def _best_specificity(volume_name: str, spec: ModalitySpec) -> int | None:
    name = volume_name.lower()
    matching = [pattern_specificity(p) for p in spec.all_patterns() if fnmatch.fnmatchcase(name, p.lower())]
    return max(matching) if matching else None


def match_volumes_to_modalities(
    volumes: Sequence[VolumeEntry] | Sequence[str],
    modalities: Sequence[ModalitySpec],
) -> dict[str, str | None]:
    """Each modality's volume (its ``volume_id``; a plain name stands for itself), or None.

    Pairs are assigned by decreasing pattern specificity, then by modality order, then by
    volume order; each volume and each modality at most once.
    """
    entries = [VolumeEntry(v, v) if isinstance(v, str) else v for v in volumes]
    pairs: list[tuple[int, int, int]] = []
    for modality_index, spec in enumerate(modalities):
        for volume_index, entry in enumerate(entries):
            specificity = _best_specificity(entry.name, spec)
            if specificity is not None:
                pairs.append((-specificity, modality_index, volume_index))
    assigned: dict[str, str | None] = {spec.name: None for spec in modalities}
    used_volumes: set[int] = set()
    for _, modality_index, volume_index in sorted(pairs):
        name = modalities[modality_index].name
        if assigned[name] is None and volume_index not in used_volumes:
            assigned[name] = entries[volume_index].volume_id
            used_volumes.add(volume_index)
    return assigned


def case_name_from_volume_name(volume_name: str) -> str:
    """``case2_arterial`` -> ``case2``; a name without a separator gives ``""`` (no case name)."""
    stripped = volume_name.strip()
    for index in range(len(stripped) - 1, 0, -1):
        if stripped[index] in "_- .":
            return stripped[:index].rstrip("_- .")
    return ""


def group_volumes_into_cases(
    volumes: Iterable[VolumeEntry],
    modalities: Sequence[ModalitySpec],
) -> list[CaseCandidate]:
    """Group volumes into cases (study, else name prefix) and match each case's modalities.

    Cases without any matched modality are left out; the order is that of the volumes.
    """
    groups: dict[str, list[VolumeEntry]] = {}
    for entry in volumes:
        key = entry.study or case_name_from_volume_name(entry.name)
        groups.setdefault(key, []).append(entry)
    cases = []
    for key, entries in groups.items():
        matched = {name: volume_id for name, volume_id in match_volumes_to_modalities(entries, modalities).items()
                   if volume_id is not None}
        if matched:
            cases.append(CaseCandidate(name=key or "case", volumes=matched))
    return cases
