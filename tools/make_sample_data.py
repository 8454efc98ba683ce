"""Write the Slicer module's bundled sample cases into ``Resources/SampleData/``.

Two phantom cases with held-out seeds (never used for training): a two-phase liver CT
(``MultiModalSegLiverPhantom_{arterial,venous}.nrrd``) and a four-sequence brain MR
(``MultiModalSegBrainPhantom_{t1,t1ce,t2,flair}.nrrd``), plus a montage thumbnail each.
Voxels are stored as int16 (CT in HU; MR rounded) with gzip, to keep the files small.

Run: ``python tools/make_sample_data.py`` (deterministic: the same files every time).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import SimpleITK as sitk  # noqa: E402

from MultiModalSegLib.demo import CT_WINDOWS  # noqa: E402
from MultiModalSegLib.imageio import write_image  # noqa: E402
from MultiModalSegLib.montage import case_montage  # noqa: E402
from MultiModalSegLib.phantoms import make_case  # noqa: E402

SAMPLE_SEED = 990_001
CASES = {"MultiModalSegLiverPhantom": "liver-ct2", "MultiModalSegBrainPhantom": "brain-mr4"}


def main() -> int:
    folder = REPOSITORY / "Resources" / "SampleData"
    folder.mkdir(parents=True, exist_ok=True)
    for sample_name, kind in CASES.items():
        case = make_case(kind, SAMPLE_SEED)
        for modality, image in case["images"].items():
            write_image(sitk.Cast(sitk.Round(image), sitk.sitkInt16), folder / f"{sample_name}_{modality}.nrrd")
        write_image(sitk.Cast(case["label"], sitk.sitkUInt8), folder / f"{sample_name}_label.nrrd")
        windows = {m: CT_WINDOWS[m] for m in case["images"] if m in CT_WINDOWS}
        case_montage(case, folder / f"{sample_name}.png", windows=windows or None)
        print(f"{sample_name}: {kind} seed {SAMPLE_SEED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
