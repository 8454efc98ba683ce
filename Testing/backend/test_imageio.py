"""Tests of MultiModalSegLib.imageio on real files written and read by SimpleITK.

Covers the round trip in every writable format (voxels and oblique geometry), the
two-file formats and DICOM series on reading, the user errors (missing, truncated, corrupt,
unsupported, a folder without DICOM), atomic writing (no temporary file left, a failed or
killed write never damages the file under the final name) and image validation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MultiModalSegLib.atomic import leftover_temporary_files
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.imageio import list_dicom_series, read_image, validate_image, write_image

REPO_ROOT = Path(__file__).resolve().parents[2]


def rotation(angles: tuple[float, float, float]) -> np.ndarray:
    """Proper rotation (det +1) from angles about x, y, z: an oblique direction matrix."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


OBLIQUE = rotation((0.2, -0.15, 0.35))


def oblique_image(dtype: type = np.float32, shape: tuple[int, int, int] = (7, 9, 11), seed: int = 0) -> sitk.Image:
    """A random 3D image with anisotropic spacing, a non-trivial origin and an oblique direction."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        array = rng.normal(100.0, 50.0, size=shape).astype(dtype)
    else:
        array = rng.integers(-1000, 2000, size=shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.71, 0.83, 2.5))
    image.SetOrigin((-120.25, 33.5, 17.75))
    image.SetDirection(tuple(OBLIQUE.ravel()))
    return image


def file_fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def assert_same_geometry(actual: sitk.Image, expected: sitk.Image, atol: float) -> None:
    assert actual.GetSize() == expected.GetSize()
    np.testing.assert_allclose(actual.GetSpacing(), expected.GetSpacing(), rtol=0, atol=atol)
    np.testing.assert_allclose(actual.GetOrigin(), expected.GetOrigin(), rtol=0, atol=atol)
    np.testing.assert_allclose(actual.GetDirection(), expected.GetDirection(), rtol=0, atol=atol)


# ------------------------------------------------------------------ round trips

# NIfTI keeps origin and direction (a quaternion) in float32; NRRD and MetaImage in decimal text.
@pytest.mark.parametrize("suffix, geometry_tolerance", [
    (".nii.gz", 1e-4), (".nii", 1e-4), (".nrrd", 1e-9), (".mha", 1e-9)])
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_round_trip_keeps_voxels_and_oblique_geometry(tmp_path: Path, suffix: str, geometry_tolerance: float,
                                                      dtype: type) -> None:
    image = oblique_image(dtype)
    path = tmp_path / f"case{suffix}"
    assert write_image(image, path) == path
    loaded = read_image(path)
    assert loaded.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(loaded), sitk.GetArrayViewFromImage(image))
    assert_same_geometry(loaded, image, geometry_tolerance)
    assert leftover_temporary_files(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_written_files_are_compressed(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((20, 30, 40), dtype=np.float32))
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        path = write_image(image, tmp_path / f"zeros{suffix}")
        assert path.stat().st_size < 20 * 30 * 40 * 4 / 10, suffix
    uncompressed = write_image(image, tmp_path / "zeros_plain.nrrd", compress=False)
    assert uncompressed.stat().st_size > 20 * 30 * 40 * 4


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_reads_two_file_formats(tmp_path: Path, suffix: str) -> None:
    image = oblique_image(np.int16)
    path = tmp_path / f"detached{suffix}"
    sitk.WriteImage(image, str(path), True)
    loaded = read_image(path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(loaded), sitk.GetArrayViewFromImage(image))
    assert_same_geometry(loaded, image, 1e-9)


def test_reading_never_modifies_the_input(tmp_path: Path) -> None:
    path = write_image(oblique_image(), tmp_path / "input.nii.gz")
    before = file_fingerprint(path)
    read_image(path)
    read_image(str(path))
    assert file_fingerprint(path) == before


def test_multi_member_gzip_nifti_is_complete(tmp_path: Path) -> None:
    """A valid .nii.gz made of two gzip members (its trailer counts only the last) still reads."""
    import gzip

    image = oblique_image()
    plain = write_image(image, tmp_path / "plain.nii")
    raw = plain.read_bytes()
    two_members = tmp_path / "two_members.nii.gz"
    two_members.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    loaded = read_image(two_members)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(loaded), sitk.GetArrayViewFromImage(image))


# ------------------------------------------------------------------ reading errors

def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MultiModalSegError, match="does not exist"):
        read_image(tmp_path / "nowhere.nii.gz")


@pytest.mark.parametrize("name", ["scan.png", "scan.img", "scan"])
def test_unsupported_extension_is_a_user_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"not an image at all" * 20)
    with pytest.raises(MultiModalSegError, match="unsupported format"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_is_a_user_error(tmp_path: Path, suffix: str) -> None:
    """ITK reads a truncated NIfTI with zeros for the lost voxels; read_image must refuse it."""
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.random((16, 20, 24), dtype=np.float32))
    path = write_image(image, tmp_path / f"cut{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(MultiModalSegError, match="copy or export it again"):
        read_image(path)


def test_garbage_with_an_image_extension_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(MultiModalSegError, match=str(path.name)):
        read_image(path)


def test_zero_spacing_in_header_is_a_user_error(tmp_path: Path) -> None:
    path = write_image(sitk.GetImageFromArray(np.ones((2, 3, 4), dtype=np.float32)), tmp_path / "s.mha",
                       compress=False)
    data = path.read_bytes()
    assert b"ElementSpacing = 1 1 1" in data
    path.write_bytes(data.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 0 1 1"))
    with pytest.raises(MultiModalSegError, match="could not be read"):
        read_image(path)


# ------------------------------------------------------------------ DICOM

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def write_dicom_series(folder: Path, array: np.ndarray, series_uid: str, description: str,
                       spacing: tuple[float, float, float], origin: np.ndarray, direction: np.ndarray) -> None:
    """Write ``array`` (z, y, x; int16) as one DICOM file per slice with the geometry tags set."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    orientation = "\\".join(f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1]))
    for k in range(array.shape[0]):
        slice_image = sitk.GetImageFromArray(array[k])
        slice_image.SetSpacing(spacing[:2])  # GDCM writes Pixel Spacing from the image
        position = origin + direction[:, 2] * spacing[2] * k
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
            "0008|0018": f"{series_uid}.{k + 1}",  # SOP instance UID
            "0008|0060": "CT",
            "0008|103e": description,
            "0020|000d": STUDY_UID,
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.8f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",  # row spacing (y) then column spacing (x)
            "0018|0050": str(spacing[2]),
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        # Slices written in reverse order: the reader must sort them by position.
        writer.SetFileName(str(folder / f"{description}_{array.shape[0] - k:03d}.dcm"))
        writer.Execute(slice_image)


@pytest.fixture
def dicom_case(tmp_path: Path) -> dict:
    rng = np.random.default_rng(7)
    big = rng.integers(-1000, 2000, size=(6, 10, 12)).astype(np.int16)
    small = rng.integers(-1000, 2000, size=(3, 10, 12)).astype(np.int16)
    geometry = {"spacing": (0.7, 0.8, 2.5), "origin": np.array([-10.5, 20.25, 33.0]), "direction": OBLIQUE}
    folder = tmp_path / "dicom"
    write_dicom_series(folder, big, "1.2.826.0.1.3680043.8.498.2", "venous", **geometry)
    write_dicom_series(folder, small, "1.2.826.0.1.3680043.8.498.3", "scout", **geometry)
    return {"folder": folder, "big": big, "small": small, **geometry}


def test_dicom_series_geometry_and_voxels(dicom_case: dict) -> None:
    image = read_image(dicom_case["folder"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), dicom_case["big"])
    np.testing.assert_allclose(image.GetSpacing(), dicom_case["spacing"], atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), dicom_case["origin"], atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), dicom_case["direction"], atol=1e-5)


def test_dicom_folder_with_several_series_reads_the_largest_and_says_so(
        dicom_case: dict, caplog: pytest.LogCaptureFixture) -> None:
    series = list_dicom_series(dicom_case["folder"])
    assert [(s.file_count, s.description, s.modality) for s in series] == [(6, "venous", "CT"), (3, "scout", "CT")]
    with caplog.at_level(logging.WARNING, logger="MultiModalSegLib.imageio"):
        image = read_image(dicom_case["folder"])
    assert image.GetSize() == (12, 10, 6)
    assert series[0].series_id in caplog.text and series[1].series_id in caplog.text

    chosen = read_image(dicom_case["folder"], series_id=series[1].series_id)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(chosen), dicom_case["small"])
    with pytest.raises(MultiModalSegError, match=series[0].series_id.replace(".", r"\.")):
        read_image(dicom_case["folder"], series_id="1.2.3.4")


def test_one_dicom_file_stands_for_its_series(dicom_case: dict) -> None:
    one_file = dicom_case["folder"] / "scout_002.dcm"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(one_file)), dicom_case["small"])
    without_extension = dicom_case["folder"] / "scout_slice"
    one_file.rename(without_extension)  # DICOM files often carry no extension; the DICM magic tells
    assert read_image(without_extension).GetSize() == (12, 10, 3)


def test_folder_without_dicom_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "not_dicom"
    (folder / "patient1").mkdir(parents=True)
    write_image(oblique_image(), folder / "image.nii.gz")
    with pytest.raises(MultiModalSegError, match="contains no DICOM series.*patient1"):
        read_image(folder)


# ------------------------------------------------------------------ writing

@pytest.mark.parametrize("name", ["out.nhdr", "out.mhd", "out.png", "out"])
def test_unsupported_output_format_is_a_user_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(MultiModalSegError, match="not a supported output format"):
        write_image(oblique_image(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_existing_file_untouched(tmp_path: Path) -> None:
    path = write_image(oblique_image(), tmp_path / "result.nii.gz")
    before = file_fingerprint(path)
    too_wide_for_nifti = sitk.Image([40000, 2, 2], sitk.sitkUInt8)  # NIfTI-1 dimensions stop at 32767
    with pytest.raises(MultiModalSegError, match="could not be written"):
        write_image(too_wide_for_nifti, path)
    assert file_fingerprint(path) == before
    assert leftover_temporary_files(tmp_path) == []


def test_killed_writer_never_leaves_a_partial_file_under_the_final_name(tmp_path: Path) -> None:
    """SIGKILL a process that keeps rewriting an image: the final name always holds a complete image."""
    final = tmp_path / "volume.nii.gz"
    write_image(sitk.GetImageFromArray(np.full((4, 5, 6), 7, dtype=np.float32)), final)
    before = file_fingerprint(final)
    child = textwrap.dedent(f"""
        import sys
        import numpy as np, SimpleITK as sitk
        from MultiModalSegLib.imageio import write_image
        big = sitk.GetImageFromArray(np.random.default_rng(0).random((128, 160, 160), dtype=np.float32))
        print("writing", flush=True)
        while True:  # each write takes a few tenths of a second, so the kill lands inside one
            write_image(big, {str(final)!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", child], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "writing"
        time.sleep(0.5)
        assert process.poll() is None, "the writer process ended on its own"
    finally:
        process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    # The old file byte for byte, or a new one that reads completely; never a partial one.
    if file_fingerprint(final) == before:
        assert sitk.GetArrayFromImage(read_image(final)).max() == 7
    else:
        assert read_image(final).GetSize() == (160, 160, 128)


# ------------------------------------------------------------------ validation

def test_valid_image_passes() -> None:
    validate_image(oblique_image(), "venous")
    validate_image(oblique_image(np.int16), "venous")


@pytest.mark.parametrize("make, message", [
    (lambda: sitk.Image([8, 8], sitk.sitkFloat32), "2D"),
    (lambda: sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), "4D"),
    (lambda: sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), "3 values per voxel"),
    (lambda: sitk.Image([4, 4, 4], sitk.sitkRGBAUInt8) if hasattr(sitk, "sitkRGBAUInt8")
     else sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 4), "4 values per voxel"),
    (lambda: sitk.Image([0, 0, 0], sitk.sitkFloat32), "empty"),
])
def test_unusable_images_are_refused_with_the_modality_name(make, message: str) -> None:
    with pytest.raises(MultiModalSegError, match=f"arterial.*{message}|{message}.*arterial"):
        validate_image(make(), "arterial")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_voxels_are_refused(bad_value: float, dtype: type) -> None:
    array = np.zeros((5, 6, 7), dtype=dtype)
    array[2, 3, 4] = bad_value
    array[4, 5, 6] = bad_value
    with pytest.raises(MultiModalSegError, match="T2.* 2 voxels"):
        validate_image(sitk.GetImageFromArray(array), "T2")


def test_non_finite_check_covers_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NaN scan runs block by block; a NaN in the last, partial block is still found."""
    from MultiModalSegLib import imageio

    monkeypatch.setattr(imageio, "_FINITE_CHECK_BLOCK_VOXELS", 64)
    array = np.ones((5, 6, 7), dtype=np.float32)
    array.reshape(-1)[-1] = np.nan
    with pytest.raises(MultiModalSegError, match="1 voxels"):
        validate_image(sitk.GetImageFromArray(array), "flair")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_voxels_in_a_file_are_refused_for_every_format(tmp_path: Path, suffix: str, bad_value: float,
                                                                  dtype: type) -> None:
    """ITK's NIfTI reader turns NaN/Inf into 0 (nifti_read_buffer): the raw voxels must be scanned."""
    array = np.ones((5, 6, 7), dtype=dtype)
    array[2, 3, 4] = bad_value
    array[4, 5, 6] = bad_value
    path = tmp_path / f"bad{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(MultiModalSegError, match="has 2 voxels that are NaN or infinite"):
        read_image(path)


def test_a_nifti_full_of_inf_is_refused_and_finite_floats_still_read(tmp_path: Path) -> None:
    path = tmp_path / "inf.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), np.inf, np.float32)), str(path))
    with pytest.raises(MultiModalSegError, match="120 voxels"):
        read_image(path)
    finite = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(finite), str(tmp_path / "ok.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(read_image(tmp_path / "ok.nii.gz")), finite)


def test_the_nifti_voxel_scan_reads_in_blocks_and_big_endian_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    """A NaN in the last partial block of a streamed .nii.gz, and in a big-endian .nii, is found."""
    from MultiModalSegLib import nifti_scan

    monkeypatch.setattr(nifti_scan, "_CHUNK_BYTES", 20)  # not a multiple of 8: elements straddle chunks
    array = np.ones((3, 4, 5), dtype=np.float64)
    array.reshape(-1)[-1] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "last.nii.gz"))
    with pytest.raises(MultiModalSegError, match="has 1 voxels"):
        read_image(tmp_path / "last.nii.gz")
    little = tmp_path / "little.nii"
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.float32)), str(little))
    data = bytearray(little.read_bytes())
    offset = int(np.frombuffer(bytes(data[108:112]), "<f4")[0])
    big = bytearray(data)
    # byte-swap the header fields a reader needs and the voxels: a big-endian NIfTI-1 file
    big[0:4] = np.array([348], ">i4").tobytes()
    big[40:56] = np.frombuffer(bytes(data[40:56]), "<i2").astype(">i2").tobytes()
    big[70:74] = np.frombuffer(bytes(data[70:74]), "<i2").astype(">i2").tobytes()
    big[108:112] = np.frombuffer(bytes(data[108:112]), "<f4").astype(">f4").tobytes()
    big[offset:] = np.frombuffer(bytes(data[offset:]), "<f4").astype(">f4").tobytes()
    (tmp_path / "big.nii").write_bytes(bytes(big))
    assert nifti_scan.count_non_finite_voxels(tmp_path / "big.nii") == 1
