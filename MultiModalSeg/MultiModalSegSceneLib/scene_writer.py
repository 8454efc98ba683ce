"""Turn a ``predict`` output folder into a Slicer scene (``.mrml`` + files) and slice-view pictures.

The backend stays free of Slicer; this small entry point of the scene layer runs under
``slicer-core`` without the Slicer application::

    python -m MultiModalSeg.MultiModalSegSceneLib.scene_writer RESULT_DIR \\
        --output demo-output/scene.mrml --pictures demo-output

It loads the inputs, the segmentation and the overlays exactly as the Slicer module does
(:func:`.result_loader.load_result`), shows the reference input as background and one
overlay as foreground (``--overlay``, default: the first attention map, else the first
level set, else uncertainty, else the first probability), centres the Red, Yellow and
Green views on the largest segment, renders them to ``slice_red.png``, ``slice_yellow.png``
and ``slice_green.png`` through Slicer's own displayable managers, and saves the scene
with relative paths. Opened in Slicer, the scene shows the same layers, colors, opacity
and slice positions.

Like the backend's CLI it prints JSON lines on stdout: ``{"event": "result", ...}`` on
success, ``{"event": "error", "message": ...}`` and exit code 2 for a problem the user
can fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from .errors import SceneLogicError
from .headless import SlicerContext, create_headless_slicer
from .result_loader import LoadedResult, load_result
from .scene_files import save_scene
from .slice_layers import DEFAULT_OVERLAY_OPACITY, show_background, show_overlay
from .slice_views import (
    DEFAULT_VIEW_NAMES,
    center_slice_views,
    fit_slice_views,
    largest_segment_center,
    slice_logics_for_views,
)

__all__ = ["SceneWriterOutput", "choose_overlay", "main", "write_scene"]

DEFAULT_PICTURE_SIZE = 512
_DEFAULT_OVERLAY_ORDER = ("attention", "level_set", "uncertainty", "probability")


@dataclass
class SceneWriterOutput:
    """What :func:`write_scene` wrote, and the scene it built (still open, for checks)."""

    scene_path: Path
    pictures: dict[str, Path] = field(default_factory=dict)
    overlay_key: str | None = None
    center_ras: tuple[float, float, float] | None = None
    context: SlicerContext | None = None
    loaded: LoadedResult | None = None


def choose_overlay(overlays: Mapping[str, object], requested: str | None) -> str | None:
    """The overlay key to show: ``requested`` (``none`` for no overlay) or the default order."""
    if requested is not None:
        if requested.lower() == "none":
            return None
        if requested not in overlays:
            available = ", ".join(overlays) or "none"
            raise SceneLogicError(f"The result has no overlay '{requested}'; choose one of: {available}.")
        return requested
    for kind in _DEFAULT_OVERLAY_ORDER:
        for key in overlays:
            if key.split(":", 1)[0] == kind:
                return key
    return None


def write_scene(
    result_dir: str | Path,
    output: str | Path,
    pictures_dir: str | Path | None = None,
    overlay: str | None = None,
    opacity: float = DEFAULT_OVERLAY_OPACITY,
    input_paths: Mapping[str, str | Path] | None = None,
    picture_size: int = DEFAULT_PICTURE_SIZE,
    center_segment: str | None = None,
) -> SceneWriterOutput:
    """Build the scene of a result folder, render its slice views, and save it; see the module docstring.

    ``center_segment`` names the segment to centre on instead of the largest one.
    """
    if picture_size < 16:
        raise SceneLogicError(f"Picture size {picture_size} is too small; use at least 16 pixels.")
    context = create_headless_slicer()
    scene = context.scene
    slice_logics = slice_logics_for_views(scene, context.application_logic, DEFAULT_VIEW_NAMES)
    loaded = load_result(scene, result_dir, input_paths=input_paths)
    background = loaded.background_volume
    if background is None:
        modalities = ", ".join(loaded.result.get("inputs") or {}) or "venous"
        raise SceneLogicError(
            f"None of the input images listed in result.json exists here; pass them with --input "
            f"(modalities: {modalities}), for example --input {modalities.split(', ')[0]}=image.nii.gz.")

    chosen = choose_overlay(loaded.overlays, overlay)
    show_background(scene, background)
    show_overlay(scene, loaded.overlays[chosen] if chosen else None, opacity)
    fit_slice_views(slice_logics, picture_size, picture_size)

    segment_id = None
    if center_segment is not None:
        segmentation = loaded.segmentation.GetSegmentation()
        segment_id = segmentation.GetSegmentIdBySegmentName(center_segment) or None
        if segment_id is None:
            names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
            raise SceneLogicError(f"There is no segment '{center_segment}'; choose one of: {', '.join(names)}.")
    center = largest_segment_center(loaded.segmentation, segment_id)
    center_ras = None
    if center is not None:
        center_ras = tuple(float(value) for value in center[1])
        center_slice_views(slice_logics, center_ras)

    pictures: dict[str, Path] = {}
    if pictures_dir is not None:
        from .slice_rendering import render_slice_views  # OpenGL only when pictures are asked for

        pictures = render_slice_views(context.application_logic, slice_logics, pictures_dir,
                                      picture_size, picture_size)
    scene_path = save_scene(scene, output)
    return SceneWriterOutput(scene_path=scene_path, pictures=pictures, overlay_key=chosen,
                             center_ras=center_ras, context=context, loaded=loaded)


def _parse_input(text: str) -> tuple[str, str]:
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=PATH; write for example venous=venous.nii.gz")
    return name, path


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m MultiModalSeg.MultiModalSegSceneLib.scene_writer",
        description="Turn a predict output folder into a Slicer scene (.mrml + files) and PNG pictures "
                    "of the Red, Yellow and Green slice views.")
    parser.add_argument("result_dir", type=Path, help="output folder of 'predict' (holds result.json)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="scene file to write, e.g. scene.mrml")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="folder for slice_red.png, slice_yellow.png, slice_green.png (none if omitted)")
    parser.add_argument("--overlay", default=None,
                        help="overlay to show: attention:<modality>, probability:<label>, level_set:<label>, "
                             "uncertainty, or none (default: first attention, level set, uncertainty, probability)")
    parser.add_argument("--opacity", type=float, default=DEFAULT_OVERLAY_OPACITY, help="overlay opacity 0-1")
    parser.add_argument("--input", action="append", type=_parse_input, default=[], metavar="NAME=PATH",
                        help="input image of a modality, instead of the path in result.json (repeatable)")
    parser.add_argument("--size", type=int, default=DEFAULT_PICTURE_SIZE, help="picture width and height in pixels")
    parser.add_argument("--center-segment", default=None, help="segment to centre the views on (default: largest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0, or 2 for a user error)."""
    args = _argument_parser().parse_args(argv)
    try:
        written = write_scene(
            args.result_dir, args.output, pictures_dir=args.pictures, overlay=args.overlay,
            opacity=args.opacity, input_paths=dict(args.input), picture_size=args.size,
            center_segment=args.center_segment)
    except SceneLogicError as error:
        print(json.dumps({"event": "error", "message": str(error)}), flush=True)
        return 2
    print(json.dumps({
        "event": "result",
        "scene": str(written.scene_path),
        "pictures": {view: str(path) for view, path in written.pictures.items()},
        "overlay": written.overlay_key,
        "center_ras": written.center_ras,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
