"""Volumes to modalities by the manifest's name patterns, and volumes grouped into cases."""

from __future__ import annotations

from MultiModalSeg.MultiModalSegModuleLib.modality_matching import (
    ModalitySpec,
    VolumeEntry,
    case_name_from_volume_name,
    group_volumes_into_cases,
    match_volumes_to_modalities,
    modality_specs_from_manifest,
    pattern_specificity,
)

LIVER = [ModalitySpec("arterial", ("*art*",)), ModalitySpec("venous", ("*ven*", "*pv*", "*portal*"))]
BRAIN = [ModalitySpec("t1", ("*t1*",)), ModalitySpec("t1ce", ("*t1ce*", "*t1c*", "*gd*")),
         ModalitySpec("t2", ("*t2*",)), ModalitySpec("flair", ("*flair*",))]


def test_patterns_match_ignoring_case() -> None:
    assert match_volumes_to_modalities(["CT ARTERIAL phase", "ct_PortalVenous"], LIVER) == {
        "arterial": "CT ARTERIAL phase", "venous": "ct_PortalVenous"}


def test_the_more_specific_pattern_wins_whatever_the_order() -> None:
    for names in (["case_t1ce", "case_t1", "case_t2", "case_flair"], ["case_flair", "case_t2", "case_t1", "case_t1ce"]):
        assert match_volumes_to_modalities(names, BRAIN) == {
            "t1": "case_t1", "t1ce": "case_t1ce", "t2": "case_t2", "flair": "case_flair"}
    assert pattern_specificity("*t1ce*") == 4 and pattern_specificity("*t[12]*") == 1


def test_each_volume_fills_one_modality_and_a_missing_one_stays_empty() -> None:
    assert match_volumes_to_modalities(["venous", "venous_copy", "MRHead"], LIVER) == {
        "arterial": None, "venous": "venous"}
    assert match_volumes_to_modalities([], LIVER) == {"arterial": None, "venous": None}


def test_the_modality_name_is_a_pattern_too() -> None:
    specs = [ModalitySpec("flair", ())]
    assert specs[0].all_patterns() == ("*flair*",)
    assert match_volumes_to_modalities(["sub01_FLAIR"], specs) == {"flair": "sub01_FLAIR"}


def test_volume_ids_are_returned_for_entries() -> None:
    entries = [VolumeEntry("vtkMRMLScalarVolumeNode3", "p1_venous"), VolumeEntry("vtkMRMLScalarVolumeNode1", "p1_art")]
    assert match_volumes_to_modalities(entries, LIVER) == {
        "arterial": "vtkMRMLScalarVolumeNode1", "venous": "vtkMRMLScalarVolumeNode3"}


def test_specs_from_a_manifest() -> None:
    manifest = {"modalities": [{"name": "arterial", "patterns": ["*art*"]}, {"name": "venous"}]}
    assert modality_specs_from_manifest(manifest) == [ModalitySpec("arterial", ("*art*",)), ModalitySpec("venous", ())]


def test_cases_are_grouped_by_study_else_by_name() -> None:
    assert case_name_from_volume_name("case2_arterial") == "case2"
    assert case_name_from_volume_name("MultiModalSegLiverPhantom_venous") == "MultiModalSegLiverPhantom"
    assert case_name_from_volume_name("venous") == ""
    volumes = [
        VolumeEntry("1", "case1_arterial"), VolumeEntry("2", "case1_venous"),
        VolumeEntry("3", "case2_arterial"),
        VolumeEntry("4", "arterial phase", study="Patient A"), VolumeEntry("5", "portal venous", study="Patient A"),
        VolumeEntry("6", "MRHead"),
    ]
    cases = group_volumes_into_cases(volumes, LIVER)
    assert [(case.name, case.volumes) for case in cases] == [
        ("case1", {"arterial": "1", "venous": "2"}),
        ("case2", {"arterial": "3"}),
        ("Patient A", {"arterial": "4", "venous": "5"}),
    ]
