"""Extract SPM's avg152 T1/T2/PD templates and tissue priors as a training case (and the ICBM 2009a check case).

The ``maml-brain-tissue-mr3`` model trains on real MR: SPM's ``avg152T1``, ``avg152T2`` and
``avg152PD`` templates (the average of 152 normal MRI scans in MNI space, 91x109x91 at 2 mm)
with a label map made from SPM's grey matter, white matter and CSF probability maps
(``toolbox/OldSeg/{grey,white,csf}.nii``, the same grid). They are GPL-2 data that this
repository never carries: this script takes them from the PyPI wheel
``spm-runtime==25.1.2.post4`` (downloaded with ``pip download --no-deps``, never installed),
which holds ``spm_runtime/_spm/_spm.ctf``, itself a zip archive of the SPM tree.

Label rule: ``background = max(0, 1 - (grey + white + csf))``; every voxel takes the class
of the largest of (background, grey, white, csf), with ties going to the earlier entry
(label values 0 background, 1 grey matter, 2 white matter, 3 CSF).

Written into ``--output``::

    spm_avg152/spm_avg152_{t1,t2,pd}.nii.gz    the three templates (float32, as SPM ships them)
    spm_avg152/spm_avg152_label.nii.gz         the label map (uint8)
    spm_avg152/spm_avg152_prob_{grey,white,csf}.nii.gz   the probability maps
    spm_avg152/spm_avg152_skullstripped_*.nii.gz   the same with everything outside the brain 0
    cases.json                                 a case list MultiModalSegLib.datasets reads
    sources.json                               files, sha256 of each, the wheel and its sha256

A second training case is the same volume "skull-stripped" (every image 0 where
grey + white + csf < 0.5, as BraTS-style inputs are), so the model sees both whole-head and
brain-only inputs; both are listed in ``cases.json``.

``--check`` also builds the independent check case from nilearn's bundled MNI ICBM152 2009a
template (``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``,
taken from the nilearn wheel, ``pip download --no-deps nilearn``): T1 only, grey and white
matter probability maps, no CSF map. It is resampled (linear) from its 1 mm grid onto the SPM
grid (both are MNI space) and labelled ``argmax(1 - gm - wm, gm, wm)`` (values 0, 1, 2: no
CSF label exists, so only grey and white matter are scored). Written to
``icbm152_2009a/`` and ``check.json``; the same case on its native 1 mm grid (labelled there
the same way, what a user would load) goes to ``check_native.json``. Never train or tune on it.

Usage::

    python tools/fetch_spm_templates.py --output /tmp/spm-templates [--wheel spm_runtime-...whl]
        [--check [--nilearn-wheel nilearn-...whl]]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SPM_WHEEL = "spm-runtime==25.1.2.post4"
CTF_MEMBER = "spm_runtime/_spm/_spm.ctf"
SPM_ROOT = "fsroot/_spm/cleaned/spm/"
SPM_FILES = {
    "t1": "canonical/avg152T1.nii",
    "t2": "canonical/avg152T2.nii",
    "pd": "canonical/avg152PD.nii",
    "grey": "toolbox/OldSeg/grey.nii",
    "white": "toolbox/OldSeg/white.nii",
    "csf": "toolbox/OldSeg/csf.nii",
}
SPM_SHAPE_XYZ = (91, 109, 91)
SPM_SPACING = (2.0, 2.0, 2.0)
NILEARN_FILES = {
    "t1": "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
BRAIN_THRESHOLD = 0.5  # grey + white + csf below this is "outside the brain" for the skull-stripped copy


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(requirement: str, folder: Path) -> Path:
    """``pip download --no-deps REQUIREMENT -d FOLDER`` with this Python; the wheel's path."""
    before = set(folder.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", requirement,
               "-d", str(folder)]
    print("running:", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"pip download {requirement} failed (exit {result.returncode}):\n{result.stderr[-2000:]}\n"
                         "Download the wheel yourself and pass it with --wheel / --nilearn-wheel.")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(name))
    new = [p for p in wheels if p not in before] or wheels
    if not new:
        raise SystemExit(f"pip download {requirement} left no wheel in {folder}.")
    return new[-1]


def read_spm_files(wheel: Path) -> dict[str, bytes]:
    """The six SPM NIfTI files (raw bytes) from the wheel's nested ``_spm.ctf`` zip."""
    try:
        with zipfile.ZipFile(wheel) as outer:
            ctf_bytes = outer.read(CTF_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise SystemExit(f"{wheel} is not the {SPM_WHEEL} wheel with {CTF_MEMBER} ({error}).")
    with zipfile.ZipFile(io.BytesIO(ctf_bytes)) as ctf:
        missing = [SPM_ROOT + path for path in SPM_FILES.values() if SPM_ROOT + path not in ctf.namelist()]
        if missing:
            raise SystemExit(f"{CTF_MEMBER} in {wheel} lacks {', '.join(missing)}; is it {SPM_WHEEL}?")
        return {key: ctf.read(SPM_ROOT + path) for key, path in SPM_FILES.items()}


def _image_from_bytes(data: bytes, suffix: str):
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"image{suffix}"
        path.write_bytes(data)
        return sitk.ReadImage(str(path))


def tissue_label(grey, white, csf):
    """Label map 0 background / 1 grey / 2 white / 3 CSF: argmax of (max(0, 1 - sum), grey, white, csf)."""
    import numpy as np

    background = np.clip(1.0 - (grey + white + csf), 0.0, None)
    return np.argmax(np.stack([background, grey, white, csf]), axis=0).astype(np.uint8)


def write_spm_case(files: dict[str, bytes], output: Path) -> dict[str, object]:
    """Verify the SPM volumes, write images, probability maps, label map and the case lists."""
    import numpy as np
    import SimpleITK as sitk

    folder = output / "spm_avg152"
    folder.mkdir(parents=True, exist_ok=True)
    images = {key: _image_from_bytes(data, ".nii") for key, data in files.items()}
    report: dict[str, object] = {}
    for key, image in images.items():
        size, spacing = tuple(image.GetSize()), tuple(round(s, 4) for s in image.GetSpacing())
        if size != SPM_SHAPE_XYZ or spacing != SPM_SPACING:
            raise SystemExit(f"SPM {SPM_FILES[key]} is {size} at {spacing} mm, expected {SPM_SHAPE_XYZ} at "
                             f"{SPM_SPACING} mm; the wheel is not the expected release.")
        reference = images["t1"]
        if any(abs(a - b) > 1e-3 for a, b in zip(image.GetOrigin() + image.GetDirection(),
                                                  reference.GetOrigin() + reference.GetDirection())):
            raise SystemExit(f"SPM {SPM_FILES[key]} does not lie on avg152T1's grid.")
        array = sitk.GetArrayFromImage(image)
        report[SPM_FILES[key]] = {"sha256": sha256_of(files[key]), "size_xyz": list(size), "spacing_mm": list(spacing),
                                  "min": float(array.min()), "max": float(array.max())}
        print(f"{SPM_FILES[key]:28s} {size} {spacing} mm  sha256 {report[SPM_FILES[key]]['sha256']}", flush=True)
    arrays = {key: sitk.GetArrayFromImage(images[key]).astype(np.float32) for key in ("grey", "white", "csf")}
    label = tissue_label(arrays["grey"], arrays["white"], arrays["csf"])
    brain = (arrays["grey"] + arrays["white"] + arrays["csf"]) >= BRAIN_THRESHOLD

    def write(array, name: str, dtype=np.float32) -> str:
        image = sitk.GetImageFromArray(array.astype(dtype))
        image.CopyInformation(images["t1"])
        sitk.WriteImage(image, str(folder / name), useCompression=True)
        return f"spm_avg152/{name}"

    entry = {"id": "spm_avg152", "images": {}, "label": write(label, "spm_avg152_label.nii.gz", np.uint8)}
    stripped = {"id": "spm_avg152_skullstripped", "images": {},
                "label": write(np.where(brain, label, 0), "spm_avg152_skullstripped_label.nii.gz", np.uint8)}
    for modality in ("t1", "t2", "pd"):
        array = sitk.GetArrayFromImage(images[modality]).astype(np.float32)
        entry["images"][modality] = write(array, f"spm_avg152_{modality}.nii.gz")
        stripped["images"][modality] = write(np.where(brain, array, 0.0), f"spm_avg152_skullstripped_{modality}.nii.gz")
    for key, array in arrays.items():
        write(array, f"spm_avg152_prob_{key}.nii.gz")
    counts = {name: int((label == value).sum()) for value, name in enumerate(("background", "grey", "white", "csf"))}
    print(f"label voxels: {counts}", flush=True)
    (output / "cases.json").write_text(json.dumps({"cases": [entry, stripped]}, indent=2) + "\n")
    return {"files": report, "label_voxels": counts, "label_rule": "argmax(max(0, 1 - grey - white - csf), grey, "
            "white, csf); skull-stripped copy: images 0 where grey + white + csf < 0.5"}


def write_check_case(wheel: Path, output: Path, reference_path: Path) -> dict[str, object]:
    """nilearn's ICBM152 2009a T1 + GM/WM, resampled onto the SPM grid, as ``check.json``."""
    import numpy as np
    import SimpleITK as sitk

    try:
        with zipfile.ZipFile(wheel) as archive:
            files = {key: archive.read(member) for key, member in NILEARN_FILES.items()}
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise SystemExit(f"{wheel} is not a nilearn wheel with the ICBM152 2009a templates ({error}).")
    reference = sitk.ReadImage(str(reference_path))
    folder = output / "icbm152_2009a"
    folder.mkdir(parents=True, exist_ok=True)
    resampled = {}
    report: dict[str, object] = {}
    for key, data in files.items():
        image = sitk.Cast(_image_from_bytes(data, ".nii.gz"), sitk.sitkFloat32)
        report[NILEARN_FILES[key]] = {"sha256": sha256_of(data), "size_xyz": list(image.GetSize()),
                                      "spacing_mm": list(image.GetSpacing())}
        print(f"{NILEARN_FILES[key]} {image.GetSize()} {image.GetSpacing()} mm  sha256 {sha256_of(data)}", flush=True)
        resampled[key] = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    gm = sitk.GetArrayFromImage(resampled["gm"]) / 255.0
    wm = sitk.GetArrayFromImage(resampled["wm"]) / 255.0
    background = np.clip(1.0 - gm - wm, 0.0, None)
    label = np.argmax(np.stack([background, gm, wm]), axis=0).astype(np.uint8)
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(reference)
    sitk.WriteImage(resampled["t1"], str(folder / "icbm152_2009a_t1.nii.gz"), useCompression=True)
    sitk.WriteImage(label_image, str(folder / "icbm152_2009a_label.nii.gz"), useCompression=True)
    # the same template at its native 1 mm grid, as a user would load it: the model's data plan resamples it
    native = {key: sitk.Cast(_image_from_bytes(data, ".nii.gz"), sitk.sitkFloat32) for key, data in files.items()}
    native_gm = sitk.GetArrayFromImage(native["gm"]) / 255.0
    native_wm = sitk.GetArrayFromImage(native["wm"]) / 255.0
    native_label = np.argmax(np.stack([np.clip(1.0 - native_gm - native_wm, 0.0, None), native_gm, native_wm]),
                             axis=0).astype(np.uint8)
    native_label_image = sitk.GetImageFromArray(native_label)
    native_label_image.CopyInformation(native["t1"])
    sitk.WriteImage(native["t1"], str(folder / "icbm152_2009a_native_t1.nii.gz"), useCompression=True)
    sitk.WriteImage(native_label_image, str(folder / "icbm152_2009a_native_label.nii.gz"), useCompression=True)
    (output / "check_native.json").write_text(json.dumps({"cases": [{
        "id": "icbm152_2009a_1mm", "images": {"t1": "icbm152_2009a/icbm152_2009a_native_t1.nii.gz"},
        "label": "icbm152_2009a/icbm152_2009a_native_label.nii.gz"}]}, indent=2) + "\n")
    counts = {name: int((label == value).sum()) for value, name in enumerate(("background", "grey", "white"))}
    print(f"check label voxels: {counts}", flush=True)
    (output / "check.json").write_text(json.dumps({"cases": [{
        "id": "icbm152_2009a", "images": {"t1": "icbm152_2009a/icbm152_2009a_t1.nii.gz"},
        "label": "icbm152_2009a/icbm152_2009a_label.nii.gz"}]}, indent=2) + "\n")
    return {"files": report, "label_voxels": counts,
            "label_rule": "resampled linearly onto the SPM grid; argmax(max(0, 1 - gm - wm), gm, wm); no CSF label"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="folder to write (keep it out of git: GPL-2 data)")
    parser.add_argument("--wheel", type=Path, help=f"the {SPM_WHEEL} wheel (default: pip download it)")
    parser.add_argument("--check", action="store_true", help="also build the nilearn ICBM152 2009a check case")
    parser.add_argument("--nilearn-wheel", type=Path, help="a nilearn wheel (default: pip download nilearn)")
    args = parser.parse_args()
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    wheel = args.wheel or download_wheel(SPM_WHEEL, output / "wheels")
    if not wheel.is_file():
        raise SystemExit(f"{wheel} does not exist; pass the {SPM_WHEEL} wheel or leave --wheel out to download it.")
    sources: dict[str, object] = {
        "spm": {"wheel": wheel.name, "wheel_sha256": sha256_of(wheel.read_bytes()), "licence": "GPL-2.0 (SPM)",
                **write_spm_case(read_spm_files(wheel), output)}}
    if args.check:
        nilearn = args.nilearn_wheel or download_wheel("nilearn", output / "wheels")
        if not nilearn.is_file():
            raise SystemExit(f"{nilearn} does not exist; pass a nilearn wheel or leave --nilearn-wheel out.")
        sources["icbm152_2009a"] = {
            "wheel": nilearn.name, "wheel_sha256": sha256_of(nilearn.read_bytes()),
            "licence": "nilearn BSD-3-Clause; ICBM 2009a template: (c) 1993-2009 Louis Collins, McConnell Brain "
                       "Imaging Centre, McGill (free use with the copyright notice)",
            **write_check_case(nilearn, output, output / "spm_avg152" / "spm_avg152_t1.nii.gz")}
    (output / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    print(f"wrote {output / 'cases.json'}" + (f" and {output / 'check.json'}" if args.check else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
