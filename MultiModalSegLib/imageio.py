"""Reading, writing and checking 3D medical images with SimpleITK.

Every image enters and leaves the backend through this module, so it is where a user's
file problems are caught and explained: a missing or truncated file, an unsupported
format, a folder without DICOM, a 2D slice or a 4D series where a 3D volume is needed,
NaN voxels. Each becomes a :class:`MultiModalSegError` with a sentence that says what to do.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage
(``.mha``, ``.mhd``) and DICOM series (a folder, or one ``.dcm`` file of the series).
Writing is limited to the single-file formats (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``)
because only a single file can be moved into place atomically
(:func:`MultiModalSegLib.atomic.atomic_write_path`).

Geometry travels untouched: the backend never converts LPS to RAS (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from MultiModalSegLib.atomic import atomic_write_path
from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.nifti_scan import check_nifti_file, non_finite_error

logger = logging.getLogger(__name__)

#: Suffixes ``read_image`` accepts for files (a folder is read as a DICOM series).
READABLE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
#: Suffixes ``write_image`` accepts: single-file formats only, so the write can be atomic.
WRITABLE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
_FORMAT_HINT = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM folder"
# Voxels checked per block when looking for NaN/Inf, so a large volume needs no full-size mask.
_FINITE_CHECK_BLOCK_VOXELS = 16_000_000


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One DICOM series found in a folder: what ``read_image(folder, series_id=...)`` can pick."""

    series_id: str
    file_count: int
    description: str
    modality: str


def _suffix_of(path: Path) -> str:
    """The lower-case format suffix, ``.nii.gz`` counted as one."""
    name = path.name.lower()
    for suffix in READABLE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _itk_reason(error: Exception) -> str:
    """The informative last line of a SimpleITK/ITK exception, without source locations."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    for marker in ("sitk::ERROR:", "ITK ERROR:"):
        if marker in reason:
            reason = reason.split(marker, 1)[1].strip()
    if reason.startswith(("NiftiImageIO", "NrrdImageIO", "MetaImageIO", "GDCMImageIO")) and "): " in reason:
        reason = reason.split("): ", 1)[1]
    return reason.rstrip(".")


@contextlib.contextmanager
def _itk_warnings_silenced() -> Iterator[None]:
    """Hide ITK's stderr warnings (e.g. GDCM's "No Series were found") while we probe files."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike[str], series_id: str | None = None) -> sitk.Image:
    """Read a 3D image file or DICOM series into a SimpleITK image (LPS geometry, as stored).

    ``path`` is a NIfTI/NRRD/MetaImage file, a folder holding a DICOM series, or one file of
    a DICOM series (its whole series is read). When a folder holds several series the one
    with the most files is read and the choice is logged; ``series_id`` picks another
    (:func:`list_dicom_series` lists them). The input file is only ever opened for reading.

    Raises :class:`MultiModalSegError` for a missing path, an unsupported extension, a folder
    without DICOM, a file that cannot be read completely (corrupt or truncated), or one with
    NaN/Inf voxels (for NIfTI counted in the raw bytes, since ITK would read them as 0).
    """
    path = Path(path)
    if not path.exists():
        raise MultiModalSegError(f"The image {path} does not exist; check the path and file name.")
    if path.is_dir():
        return _read_dicom_folder(path, series_id)
    suffix = _suffix_of(path)
    if suffix == ".dcm" or (suffix not in READABLE_SUFFIXES and _looks_like_dicom(path)):
        return _read_dicom_file(path, series_id)
    if suffix not in READABLE_SUFFIXES:
        raise MultiModalSegError(
            f"The image {path} has an unsupported format ('{suffix or 'no extension'}'); "
            f"give {_FORMAT_HINT}, or convert it to .nii.gz first.")
    nifti = suffix in (".nii", ".nii.gz")
    if nifti:
        # ITK's NIfTI reader reads a truncated file's lost voxels and every NaN/Inf as 0 without a
        # word: check the raw bytes first (nifti_scan.py).
        check_nifti_file(path)
    try:
        with _itk_warnings_silenced():
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise MultiModalSegError(
            f"The image {path} could not be read ({_itk_reason(error)}); the file is probably corrupt or "
            "incomplete: copy or export it again.") from error
    if not nifti:
        _refuse_non_finite(image, path)
    return image


def _refuse_non_finite(image: sitk.Image, path: Path) -> None:
    """NRRD, MetaImage and DICOM keep NaN/Inf as stored: count them in the image read."""
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        bad = _count_non_finite(sitk.GetArrayViewFromImage(image))
        if bad:
            raise non_finite_error(path, bad)


def _looks_like_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry ``DICM`` at byte 128, whatever their (often missing) extension."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def list_dicom_series(folder: str | os.PathLike[str]) -> list[DicomSeriesInfo]:
    """The DICOM series directly inside ``folder``, largest first (empty when there are none)."""
    folder = Path(folder)
    found: list[DicomSeriesInfo] = []
    with _itk_warnings_silenced():
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        for series_id in series_ids:
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
            description, modality = "", ""
            try:
                reader = sitk.ImageFileReader()
                reader.SetFileName(files[0])
                reader.ReadImageInformation()
                if reader.HasMetaDataKey("0008|103e"):
                    description = reader.GetMetaData("0008|103e").strip()
                if reader.HasMetaDataKey("0008|0060"):
                    modality = reader.GetMetaData("0008|0060").strip()
            except RuntimeError:
                pass
            found.append(DicomSeriesInfo(series_id, len(files), description, modality))
    return sorted(found, key=lambda info: (-info.file_count, info.series_id))


def _describe(info: DicomSeriesInfo) -> str:
    label = " ".join(part for part in (info.modality, info.description) if part)
    return f"{info.series_id} ({info.file_count} files{', ' + label if label else ''})"


def _read_dicom_folder(folder: Path, series_id: str | None) -> sitk.Image:
    series = list_dicom_series(folder)
    if not series:
        subfolders = [p.name for p in sorted(folder.iterdir()) if p.is_dir()][:5]
        hint = (f" It has subfolders ({', '.join(subfolders)}); give the one that holds the slices."
                if subfolders else "")
        raise MultiModalSegError(
            f"The folder {folder} contains no DICOM series; give the folder that directly holds the "
            f"DICOM slices, or an image file ({_FORMAT_HINT}).{hint}")
    if series_id is None:
        chosen = series[0]
        if len(series) > 1:
            logger.warning("The folder %s holds %d DICOM series; reading the largest, %s. Others: %s. "
                           "Pass series_id to choose another.", folder, len(series), _describe(chosen),
                           "; ".join(_describe(s) for s in series[1:]))
    else:
        matches = [s for s in series if s.series_id == series_id]
        if not matches:
            raise MultiModalSegError(
                f"The folder {folder} has no DICOM series {series_id}; its series are "
                f"{'; '.join(_describe(s) for s in series)}. Give one of these ids.")
        chosen = matches[0]
    return _read_dicom_series(folder, chosen.series_id)


def _read_dicom_file(path: Path, series_id: str | None) -> sitk.Image:
    """A single DICOM file stands for its series: read every file of that series in its folder."""
    if series_id is None:
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            with _itk_warnings_silenced():
                reader.ReadImageInformation()
            if reader.HasMetaDataKey("0020|000e"):
                series_id = reader.GetMetaData("0020|000e").strip()
        except RuntimeError as error:
            raise MultiModalSegError(
                f"The DICOM file {path} could not be read ({_itk_reason(error)}); give the folder of the "
                "series, or export the series again.") from error
    return _read_dicom_folder(path.parent, series_id)


def _read_dicom_series(folder: Path, series_id: str) -> sitk.Image:
    with _itk_warnings_silenced():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with _itk_warnings_silenced():
            image = reader.Execute()
    except RuntimeError as error:
        raise MultiModalSegError(
            f"The DICOM series {series_id} in {folder} could not be read ({_itk_reason(error)}); check that "
            "all its slices are present and intact, or export it again.") from error
    logger.info("Read DICOM series %s from %s (%d files).", series_id, folder, len(files))
    return image


# --------------------------------------------------------------------------- writing


def write_image(image: sitk.Image, path: str | os.PathLike[str], compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``) atomically.

    The data go to a temporary file in the same folder that is moved onto ``path`` only once
    complete, so a killed process never leaves a half-written image under the final name and
    a failed write leaves an existing file as it was. ``compress`` gzips the voxels (NRRD,
    MetaImage; ``.nii.gz`` is always gzipped and ``.nii`` never). Returns ``path``.
    """
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix not in WRITABLE_SUFFIXES:
        two_file = " (.nhdr and .mhd keep the voxels in a second file, which cannot be written atomically)" \
            if suffix in (".nhdr", ".mhd") else ""
        raise MultiModalSegError(
            f"Cannot write {path}: '{suffix or 'no extension'}' is not a supported output format{two_file}; "
            f"use {', '.join(WRITABLE_SUFFIXES)}.")
    try:
        with atomic_write_path(path) as temporary:
            sitk.WriteImage(image, str(temporary), compress and suffix != ".nii")
    except RuntimeError as error:
        raise MultiModalSegError(
            f"The image could not be written to {path} ({_itk_reason(error)}); choose another format or "
            "folder.") from error
    except OSError as error:
        raise MultiModalSegError(
            f"The image could not be written to {path} ({error.strerror or error}); check that the folder "
            "is writable and the disk has free space.") from error
    return path


# --------------------------------------------------------------------------- checking


def validate_image(image: sitk.Image, name: str) -> None:
    """Refuse an image the networks cannot use, naming the modality ``name`` and the remedy.

    A usable image is 3D, scalar (one component per voxel), not empty, has positive finite
    spacing, an invertible direction, and finite voxel values. Returns ``None`` when it is.
    """
    dimension = image.GetDimension()
    if dimension == 2:
        raise MultiModalSegError(
            f"The {name} image is 2D (a single slice); give the whole 3D volume (the DICOM folder or a "
            "3D .nii.gz).")
    if dimension != 3:
        raise MultiModalSegError(
            f"The {name} image is {dimension}D (several volumes, e.g. a time series or diffusion "
            "directions); extract the one 3D volume to segment and give that.")
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise MultiModalSegError(
            f"The {name} image has {components} values per voxel (a color or vector image); give a "
            "grayscale 3D volume, e.g. extract one channel.")
    size = image.GetSize()
    if min(size) == 0:
        raise MultiModalSegError(f"The {name} image is empty (size {size}); check the file and export it again.")
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise MultiModalSegError(
            f"The {name} image has invalid voxel spacing {tuple(spacing)} (it must be positive); fix the "
            "spacing in the file's header.")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    if not np.all(np.isfinite(direction)) or not np.all(np.isfinite(origin)) or abs(np.linalg.det(direction)) < 1e-6:
        raise MultiModalSegError(
            f"The {name} image has an invalid orientation or origin in its header; export it again.")
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        bad = _count_non_finite(sitk.GetArrayViewFromImage(image))
        if bad:
            raise MultiModalSegError(
                f"The {name} image has {bad} voxels that are NaN or infinite; replace them (e.g. by 0) "
                "and save the image again.")


def _count_non_finite(array: np.ndarray) -> int:
    """NaN/Inf voxels, counted block by block so no full-size boolean mask is allocated."""
    flat = array.reshape(-1)
    bad = 0
    for start in range(0, flat.size, _FINITE_CHECK_BLOCK_VOXELS):
        block = flat[start:start + _FINITE_CHECK_BLOCK_VOXELS]
        bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    return bad
