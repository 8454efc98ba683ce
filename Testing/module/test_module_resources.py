"""The module's resources: the icon, the Python requirements, the sample data names."""

from __future__ import annotations

import pytest
from module_testing import ICON_FILE, REPOSITORY

from MultiModalSeg.MultiModalSegModuleLib import dependencies, sample_data

SAMPLE_DATA_DIR = REPOSITORY / "Resources" / "SampleData"


def test_the_icon_is_a_128_pixel_png_that_is_not_blank() -> None:
    from PIL import Image

    assert ICON_FILE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(ICON_FILE) as icon:
        assert icon.format == "PNG"
        assert icon.size == (128, 128)
        rgba = icon.convert("RGBA")
    colors = rgba.getcolors(maxcolors=128 * 128)
    assert colors is not None and len(colors) > 8, "the icon is (nearly) a single color"
    assert rgba.getpixel((0, 0))[3] == 0, "the corners should be transparent (rounded tile)"


def test_requirements_name_what_slicer_lacks_and_nothing_slicer_ships() -> None:
    path = REPOSITORY / "Resources" / "requirements.txt"
    requirements = {r.name.lower(): r for r in dependencies.read_requirements(path)}
    assert {"torch", "safetensors", "edt"} <= set(requirements)
    assert not {"numpy", "simpleitk", "vtk", "packaging"} & set(requirements), "Slicer ships these; never upgrade them"
    assert requirements["torch"].specifier.startswith(">=")
    for requirement in requirements.values():
        assert requirement.specifier, f"{requirement.name} has no version range"


def test_sample_case_names_match_the_bundled_model_patterns() -> None:
    from MultiModalSeg.MultiModalSegModuleLib.modality_matching import ModalitySpec, match_volumes_to_modalities

    liver = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")
    specs = [ModalitySpec("arterial", ("*art*",)), ModalitySpec("venous", ("*ven*", "*pv*", "*portal*"))]
    names = [liver.node_name(m) for m in liver.modalities]
    assert match_volumes_to_modalities(names, specs) == dict(zip(("arterial", "venous"), names))
    brain = sample_data.sample_case_by_name("MultiModalSegBrainPhantom")
    specs = [ModalitySpec(m, (f"*{m}*",)) for m in ("t1", "t1ce", "t2", "flair")]
    names = [brain.node_name(m) for m in brain.modalities]
    assert match_volumes_to_modalities(names, specs) == dict(zip(brain.modalities, names))
    assert sample_data.expected_sample_file_names() == [
        "MultiModalSegLiverPhantom_arterial.nrrd", "MultiModalSegLiverPhantom_venous.nrrd",
        "MultiModalSegBrainPhantom_t1.nrrd", "MultiModalSegBrainPhantom_t1ce.nrrd",
        "MultiModalSegBrainPhantom_t2.nrrd", "MultiModalSegBrainPhantom_flair.nrrd"]


@pytest.mark.skipif(not SAMPLE_DATA_DIR.is_dir(), reason="Resources/SampleData is not there yet")
def test_the_bundled_sample_files_are_there() -> None:
    missing = [name for name in sample_data.expected_sample_file_names() if not (SAMPLE_DATA_DIR / name).is_file()]
    assert not missing, f"Resources/SampleData lacks {missing}"


@pytest.mark.skipif(not SAMPLE_DATA_DIR.is_dir(), reason="Resources/SampleData is not there yet")
def test_sample_data_is_registered_with_sha256_checksums_of_the_shipped_files(tmp_path) -> None:
    """SampleData reuses a cached file unless a checksum says it is stale; with the digest of the shipped
    file, an updated extension's phantoms replace the old cached copies. Checked with Slicer's own
    checksum functions (slicer.util of slicer-core), as SampleData.downloadFile uses them."""
    import shutil

    import slicer.util

    liver = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")
    arguments = sample_data.sample_data_source_arguments(liver, SAMPLE_DATA_DIR, ICON_FILE)
    assert arguments["category"] == sample_data.SAMPLE_DATA_CATEGORY
    assert arguments["fileNames"] == [liver.file_name(m) for m in liver.modalities]
    assert arguments["nodeNames"] == [liver.node_name(m) for m in liver.modalities]
    assert arguments["loadFileTypes"] == ["VolumeFile", "VolumeFile"] and "loadFileType" not in arguments
    assert len(arguments["checksums"]) == len(arguments["uris"]) == 2
    for uri, checksum in zip(arguments["uris"], arguments["checksums"]):
        algorithm, digest = slicer.util.extractAlgoAndDigest(checksum)
        path = SAMPLE_DATA_DIR / uri.rsplit("/", 1)[1]
        assert algorithm == "SHA256" and slicer.util.computeChecksum(algorithm, str(path)) == digest

    # A cached copy from an older release no longer matches: SampleData copies the file again.
    cached = tmp_path / arguments["fileNames"][0]
    shutil.copy(SAMPLE_DATA_DIR / arguments["fileNames"][0], cached)
    with open(cached, "ab") as stream:
        stream.write(b"\0")
    algorithm, digest = slicer.util.extractAlgoAndDigest(arguments["checksums"][0])
    assert slicer.util.computeChecksum(algorithm, str(cached)) != digest
