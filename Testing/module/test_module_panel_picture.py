"""The extension's screenshot: ``tools/render_panel.py`` renders the .ui offscreen, and the picture the
extension's metadata points at exists and is described honestly in the README."""

from __future__ import annotations

import importlib.util
import re

import pytest
from module_testing import REPOSITORY

pytest.importorskip("PySide6.QtWidgets")
PICTURE = REPOSITORY / "docs" / "images" / "MultiModalSeg-panel.png"


def load_tool():
    spec = importlib.util.spec_from_file_location("render_panel", REPOSITORY / "tools" / "render_panel.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.slow
def test_the_panel_renders_offscreen_with_the_liver_case_in_it(tmp_path) -> None:
    from PIL import Image

    output = load_tool().render_panel(tmp_path / "panel.png")
    with Image.open(output) as picture:
        assert picture.format == "PNG"
        width, height = picture.size
        colors = picture.convert("RGB").getcolors(maxcolors=1 << 20)
    assert width >= 400 and height > 1.5 * width, (width, height)  # the whole panel, every section expanded
    assert colors is not None and len(colors) > 50, "the picture is (nearly) blank"


def test_the_screenshot_the_extension_names_exists_and_the_readme_says_what_it_shows() -> None:
    cmake = (REPOSITORY / "CMakeLists.txt").read_text(encoding="utf-8")
    url = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]+)"\)', cmake).group(1)
    assert (REPOSITORY / url.split("/main/", 1)[1]).resolve() == PICTURE.resolve()
    assert PICTURE.is_file() and PICTURE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    after = readme.split("(docs/images/MultiModalSeg-panel.png)", 1)[1][:600]
    assert "stand-ins" in after and "tools/render_panel.py" in after
