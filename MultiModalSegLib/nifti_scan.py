"""What ITK's NIfTI reader does not tell: a truncated file and NaN/Inf voxels, read from the raw bytes.

ITK reads NIfTI through the nifti1_io library, which hides two faults of a file without a word:

* a file cut off while copying is read with zeros in place of the lost voxels;
* every NaN or infinite float voxel is replaced by 0 (``nifti_read_buffer`` "fixes" them),
  so a volume full of Inf reads as a volume of zeros and is segmented as if it were real.

So before ITK reads a ``.nii``/``.nii.gz`` file, :func:`check_nifti_file` reads the header and,
for floating-point data, streams the voxel bytes themselves (decompressing ``.nii.gz`` chunk
by chunk, never the whole volume at once) and counts the non-finite values. MHA and NRRD keep
NaN/Inf as stored, so their voxels are checked after reading (``imageio.read_image``).

``scl_slope``/``scl_inter`` cannot add a non-finite value: nifti1_io ignores a non-finite
slope or intercept, and a finite scaling of finite voxels stays finite.
"""

from __future__ import annotations

import gzip
import itertools
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from MultiModalSegLib.errors import MultiModalSegError

# NIfTI datatype codes with floating-point components, and the numpy type of one component.
_FLOAT_COMPONENTS = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}  # FLOAT32, FLOAT64, COMPLEX64, COMPLEX128
_CHUNK_BYTES = 1 << 22
"""Bytes decompressed and checked at a time (4 MiB: bounded memory for any volume)."""


@dataclass(frozen=True)
class NiftiLayout:
    """Where the voxels of a NIfTI-1/-2 file lie and what they are."""

    endian: str
    datatype: int
    vox_offset: int
    voxel_bytes: int

    @property
    def expected_bytes(self) -> int:
        """Header + voxel bytes a complete file holds (uncompressed)."""
        return self.vox_offset + self.voxel_bytes

    @property
    def float_component(self) -> np.dtype | None:
        """The numpy dtype of one float component, or None for integer data (which cannot be NaN)."""
        code = _FLOAT_COMPONENTS.get(self.datatype)
        return None if code is None else np.dtype(self.endian + code)


def nifti_layout(header: bytes, path: Path) -> NiftiLayout:
    """Parse the first bytes of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header, either byte order."""
    for endian in ("<", ">"):
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "hh", header[70:74])
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "hh", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            vox_offset = int(struct.unpack(endian + "q", header[168:176])[0])
            break
    else:
        raise MultiModalSegError(
            f"The image {path} is not a valid NIfTI file (its header is missing or damaged); "
            "copy or export it again.")
    rank = min(max(int(dims[0]), 0), 7)
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:rank + 1]], dtype=np.int64)) if rank else 1
    return NiftiLayout(endian=endian, datatype=int(datatype), vox_offset=max(int(vox_offset), 0),
                       voxel_bytes=voxels * max(int(bitpix), 0) // 8)


def _incomplete(path: Path) -> MultiModalSegError:
    return MultiModalSegError(
        f"The image {path} is incomplete (the file ends before all its voxels); it was probably cut off "
        "while copying or downloading: copy or export it again.")


def _scan_voxels(stream: BinaryIO, layout: NiftiLayout, first: bytes = b"") -> tuple[int, int]:
    """Read ``first`` (the bytes already read from the file's start) and the stream to its end;
    return (bytes in total, non-finite voxels).

    Non-finite values are counted among the ``layout.voxel_bytes`` voxel bytes only (for complex
    data a voxel with two bad components counts twice; it is refused either way).
    """
    component = layout.float_component
    total = 0
    bad = 0
    carry = b""
    end = layout.expected_bytes
    for chunk in itertools.chain([first], iter(lambda: stream.read(_CHUNK_BYTES), b"")):
        start = total
        total += len(chunk)
        if component is None:
            continue
        low, high = max(layout.vox_offset - start, 0), max(min(end - start, len(chunk)), 0)
        if low >= high:
            continue
        data = carry + chunk[low:high]
        usable = len(data) - len(data) % component.itemsize
        values = np.frombuffer(data[:usable], dtype=component)
        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        carry = data[usable:]
    return total, bad


def _read_layout(stream: BinaryIO, path: Path) -> tuple[NiftiLayout, bytes]:
    header = stream.read(540)
    return nifti_layout(header, path), header


def count_non_finite_voxels(path: str | os.PathLike[str]) -> int:
    """NaN/Inf voxels stored in a NIfTI file (0 for integer data); refuses a truncated file.

    Integer data are only checked for completeness; an uncompressed file by its size and a
    ``.nii.gz`` by the length gzip stores in its trailer (decompressed only when the trailer
    disagrees, e.g. a multi-member gzip). Float data are always streamed through.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        if not compressed:
            layout, header = _read_layout(handle, path)
            if path.stat().st_size < layout.expected_bytes:
                raise _incomplete(path)
            if layout.float_component is None:
                return 0
            return _scan_voxels(handle, layout, header)[1]
        try:
            with gzip.GzipFile(fileobj=handle) as stream:
                layout, header = _read_layout(stream, path)
                if layout.float_component is None:
                    # Fast path: gzip's trailer stores the uncompressed length modulo 2**32.
                    handle.seek(-4, os.SEEK_END)
                    if struct.unpack("<I", handle.read(4))[0] == layout.expected_bytes % 2**32:
                        return 0
                    handle.seek(0)
                    with gzip.GzipFile(fileobj=handle) as again:
                        total, bad = _scan_voxels(again, layout)
                else:
                    total, bad = _scan_voxels(stream, layout, header)
        except (OSError, EOFError, zlib.error) as error:
            raise _incomplete(path) from error
    if total < layout.expected_bytes:
        raise _incomplete(path)
    return bad


def check_nifti_file(path: str | os.PathLike[str]) -> None:
    """Refuse a truncated NIfTI file and one holding NaN/Inf voxels, with a sentence naming the file."""
    bad = count_non_finite_voxels(path)
    if bad:
        raise non_finite_error(Path(path), bad)


def non_finite_error(path: Path, bad: int) -> MultiModalSegError:
    """The one sentence for an image file with NaN/Inf voxels (every format says the same)."""
    return MultiModalSegError(
        f"The image {path} has {bad} voxels that are NaN or infinite; replace them (e.g. by 0) and save the "
        "image again.")
