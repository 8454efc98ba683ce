"""Segment terminology: a manifest label's coded concepts as Slicer's terminology tag.

Slicer stores what a segment *is* (DICOM coded concepts: category, type, anatomic region)
as one string on the segment, ``vtkSegment::SetTerminology``, in the format of
``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry``: seven ``~``-separated
fields, each coded concept a ``scheme^code^meaning`` triple::

    context~category~type~typeModifier~regionContext~region~regionModifier

for example ``Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^
Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^``.

A manifest label's ``terminology`` may be given

* as that string, used unchanged (it must have the seven fields), or
* as a mapping with ``category`` and ``type`` (required) and optionally ``type_modifier``,
  ``region``, ``region_modifier``, ``context`` and ``region_context``, each coded concept
  either ``{"scheme": "SCT", "code": "10200004", "meaning": "Liver"}``, the DICOM spelling
  ``{"CodingSchemeDesignator": ..., "CodeValue": ..., "CodeMeaning": ...}``, or a list
  ``["SCT", "10200004", "Liver"]``. camelCase keys (``typeModifier``, ...) work too.

A label without terminology keeps Slicer's default for new segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import SceneLogicError

__all__ = [
    "DEFAULT_REGION_CONTEXT",
    "DEFAULT_TERMINOLOGY_CONTEXT",
    "coded_concept_triple",
    "terminology_tag",
]

DEFAULT_TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
"""Slicer's built-in category/type list, used when a terminology mapping names no context."""

DEFAULT_REGION_CONTEXT = "Anatomic codes - DICOM master list"
"""Slicer's built-in anatomic region list, used when a terminology mapping names no region context."""

_FIELD_ALIASES = {
    "category": ("category",),
    "type": ("type",),
    "type_modifier": ("type_modifier", "typeModifier", "modifier"),
    "region": ("region", "anatomic_region", "anatomicRegion"),
    "region_modifier": ("region_modifier", "regionModifier", "anatomic_region_modifier", "anatomicRegionModifier"),
    "context": ("context", "terminology_context", "terminologyContextName"),
    "region_context": ("region_context", "regionContext", "anatomic_context", "anatomicContextName"),
}


def _field(entry: Mapping[str, Any], name: str) -> Any:
    for alias in _FIELD_ALIASES[name]:
        if alias in entry and entry[alias] is not None:
            return entry[alias]
    return None


def coded_concept_triple(concept: Any, where: str) -> tuple[str, str, str]:
    """``(scheme, code, meaning)`` of one coded concept in any of the accepted spellings.

    ``None`` gives the empty concept ``("", "", "")``. The separators ``~`` and ``^`` cannot
    appear inside a field, because Slicer could not read the tag back.
    """
    if concept is None:
        return ("", "", "")
    if isinstance(concept, Mapping):
        scheme = concept.get("scheme", concept.get("CodingSchemeDesignator", ""))
        code = concept.get("code", concept.get("value", concept.get("CodeValue", "")))
        meaning = concept.get("meaning", concept.get("CodeMeaning", ""))
        triple = (scheme, code, meaning)
    elif isinstance(concept, Sequence) and not isinstance(concept, str) and len(concept) == 3:
        triple = tuple(concept)
    else:
        raise SceneLogicError(
            f"The {where} of a terminology is {concept!r}; write it as "
            '{"scheme": "SCT", "code": "10200004", "meaning": "Liver"} or ["SCT", "10200004", "Liver"].')
    fields = tuple("" if value is None else str(value) for value in triple)
    if any("~" in value or "^" in value for value in fields):
        raise SceneLogicError(
            f"The {where} of a terminology contains '~' or '^' ({fields}); remove them, Slicer uses them as separators.")
    return fields  # type: ignore[return-value]


def terminology_tag(terminology: str | Mapping[str, Any] | None, label_name: str = "") -> str | None:
    """The Slicer terminology tag for a manifest label's ``terminology``, or None if it has none.

    ``label_name`` only names the label in error messages.
    """
    if terminology is None or terminology == "" or terminology == {}:
        return None
    for_label = f" of label '{label_name}'" if label_name else ""
    if isinstance(terminology, str):
        if terminology.count("~") != 6:
            raise SceneLogicError(
                f"The terminology{for_label} is not a Slicer terminology string (it needs 7 fields separated "
                "by '~'); give it as a mapping with 'category' and 'type' instead.")
        return terminology
    if not isinstance(terminology, Mapping):
        raise SceneLogicError(
            f"The terminology{for_label} must be a string or a mapping with 'category' and 'type', "
            f"not {type(terminology).__name__}.")
    if _field(terminology, "category") is None or _field(terminology, "type") is None:
        raise SceneLogicError(
            f"The terminology{for_label} needs both 'category' and 'type' coded concepts; add them to the manifest.")

    def triple(name: str) -> str:
        return "^".join(coded_concept_triple(_field(terminology, name), f"{name.replace('_', ' ')}{for_label}"))

    context = str(_field(terminology, "context") or DEFAULT_TERMINOLOGY_CONTEXT)
    region_context = str(_field(terminology, "region_context") or DEFAULT_REGION_CONTEXT)
    return "~".join([
        context,
        triple("category"),
        triple("type"),
        triple("type_modifier"),
        region_context,
        triple("region"),
        triple("region_modifier"),
    ])
