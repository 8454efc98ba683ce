"""``mmseg demo``: the main job on bundled sample data, for a first look.

At this stage of the project (no bundled weights yet) the demo generates one held-out
phantom case of every kind, writes its modalities and label as NIfTI, and a PNG montage
of each (every modality with the label outline). When bundled models land, it segments
them too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from MultiModalSegLib.progress import ProgressReporter


CT_WINDOWS = {"arterial": (60, 400), "venous": (60, 400), "ct": (50, 400)}
"""Abdominal soft-tissue window (level, width) in HU for the CT montages."""


def run_demo(output: str | Path, seed: int = 2026, reporter: ProgressReporter | None = None) -> dict[str, Any]:
    """Write phantom sample cases and their montages into ``output``; return a summary."""
    from MultiModalSegLib.imageio import write_image
    from MultiModalSegLib.montage import case_montage
    from MultiModalSegLib.phantoms import PHANTOM_KINDS, make_case

    reporter = reporter or ProgressReporter(quiet=True)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files: list[str] = []
    kinds = list(PHANTOM_KINDS)
    for index, kind in enumerate(kinds, start=1):
        case = make_case(kind, seed)
        folder = output / "cases" / kind
        for modality, image in case["images"].items():
            path = folder / f"{kind}_{modality}.nii.gz"
            write_image(image, path)
            files.append(str(path.relative_to(output)))
        label_path = folder / f"{kind}_label.nii.gz"
        write_image(case["label"], label_path)
        files.append(str(label_path.relative_to(output)))
        picture = output / f"{kind}.png"
        windows = {m: CT_WINDOWS[m] for m in case["images"] if m in CT_WINDOWS}
        case_montage(case, picture, windows=windows or None)
        files.append(str(picture.relative_to(output)))
        reporter.progress("demo", index, len(kinds), kind=kind)
    return {"output": str(output.resolve()), "files": files, "seconds": round(time.perf_counter() - started, 2)}
