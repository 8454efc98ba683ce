"""The extension's CMake files: metadata, the files they list exist, and the installed module works.

The installed layout is built for real: CMake configures, builds and installs the extension
against ``slicer_cmake_stub`` (a stand-in for Slicer's CMake package with the same copy and
install rules), and the installed ``qt-scripted-modules`` folder is then checked as Slicer
would use it: the module finds its resources and backend beside itself, and the bundled
backend answers from there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from module_testing import MODULE_DIR, REPOSITORY, SLICER_CMAKE_STUB

TOP_LEVEL = REPOSITORY / "CMakeLists.txt"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"


def cmake_set_lists(text: str) -> dict[str, list[str]]:
    """``set(NAME item item ...)`` blocks of a CMake file."""
    return {match.group(1): match.group(2).split()
            for match in re.finditer(r"^set\((\w+)\s+([^)]*?)\)", text, re.MULTILINE | re.DOTALL)}


def test_top_level_has_the_extension_metadata() -> None:
    text = TOP_LEVEL.read_text(encoding="utf-8")
    values = dict(re.findall(r'^set\((EXTENSION_\w+)\s+"([^"]*)"\)', text, re.MULTILINE))
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                "EXTENSION_SCREENSHOTURLS"):
        assert values.get(key), f"{key} is empty"
    assert values["EXTENSION_CATEGORY"] == "Segmentation"
    assert values["EXTENSION_DEPENDS"] == "PyTorch"
    assert values["EXTENSION_ICONURL"].endswith("Resources/Icons/MultiModalSeg.png")
    assert "project(MultiModalSeg)" in text and "add_subdirectory(MultiModalSeg)" in text
    assert "find_package(Slicer 5.10 REQUIRED)" in text and "${Slicer_EXTENSION_CPACK}" in text


def test_cmake_states_the_supported_slicer_versions_as_the_module_does() -> None:
    from MultiModalSeg.MultiModalSegModuleLib import supported_versions

    text = TOP_LEVEL.read_text(encoding="utf-8")
    listed = re.search(r'set\(MULTIMODALSEG_SUPPORTED_SLICER_VERSIONS "([^"]+)"\)', text).group(1).split(";")
    assert listed == [f"{major}.{minor}" for major, minor in supported_versions.SUPPORTED_SLICER_VERSIONS]
    assert f"find_package(Slicer {listed[0]} REQUIRED)" in text
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert supported_versions.supported_versions_sentence() in " ".join(readme.split())


def test_the_module_cmake_lists_files_that_exist() -> None:
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule(" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    lists = cmake_set_lists(text)
    module_name = lists["MODULE_NAME"][0]
    scripts = [item.replace("${MODULE_NAME}", module_name) for item in lists["MODULE_PYTHON_SCRIPTS"]]
    resources = [item.replace("${MODULE_NAME}", module_name) for item in lists["MODULE_PYTHON_RESOURCES"]]
    assert scripts == ["MultiModalSeg.py"]
    for script in scripts:
        assert (MODULE_DIR / script).is_file(), script
    assert {"Resources/Icons/MultiModalSeg.png", "Resources/UI/MultiModalSeg.ui", "Resources/requirements.txt"} <= set(
        resources)
    for resource in resources:
        assert (REPOSITORY / resource).is_file(), resource
    for pattern in ("MultiModalSegModuleLib/*.py", "MultiModalSegSceneLib/*.py"):
        assert f"${{CMAKE_CURRENT_SOURCE_DIR}}/{pattern}" in text and list(MODULE_DIR.glob(pattern)), pattern
    assert "${REPOSITORY_DIR}/MultiModalSegLib/*.py" in text and list((REPOSITORY / "MultiModalSegLib").glob("*.py"))
    assert "${REPOSITORY_DIR}/Resources/Models/*" in text and "${REPOSITORY_DIR}/Resources/SampleData/*" in text


@pytest.fixture(scope="module")
def installed_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configure, build and install the extension against the Slicer stand-in; the qt-scripted-modules folder."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    work = tmp_path_factory.mktemp("cmake")
    build, prefix = work / "build", work / "prefix"
    environment = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    for command in ([cmake, "-S", str(REPOSITORY), "-B", str(build), f"-DSlicer_DIR={SLICER_CMAKE_STUB}",
                     "-DBUILD_TESTING=ON"],
                    [cmake, "--build", str(build)],
                    [cmake, "--install", str(build), "--prefix", str(prefix)]):
        completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300,
                                   check=False)
        if completed.returncode != 0 and "COMPILER could be found" in completed.stdout + completed.stderr:
            pytest.skip("no C/C++ compiler: CMake's project() cannot configure (Slicer's build has one)")
        assert completed.returncode == 0, f"{' '.join(command[:2])} failed:\n{completed.stdout}\n{completed.stderr}"
    return prefix / "lib" / "Slicer-5.12" / "qt-scripted-modules"


@pytest.mark.slow
@pytest.mark.parametrize("version, accepted, warned", [("5.8", False, False), ("5.14", True, True)])
def test_configuring_for_another_slicer_is_refused_or_warned(tmp_path: Path, version: str, accepted: bool,
                                                              warned: bool) -> None:
    """Slicer 5.8 is refused by find_package's version check; a newer one builds with a warning."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    completed = subprocess.run([cmake, "-S", str(REPOSITORY), "-B", str(tmp_path / "build"),
                                f"-DSlicer_DIR={SLICER_CMAKE_STUB}", f"-DSLICER_STUB_VERSION={version}"],
                               capture_output=True, text=True, timeout=300, check=False)
    output = " ".join((completed.stdout + completed.stderr).split())  # CMake wraps its messages
    if "COMPILER could be found" in output:
        pytest.skip("no C/C++ compiler: CMake's project() cannot configure (Slicer's build has one)")
    assert (completed.returncode == 0) == accepted, output
    if not accepted:
        assert "requested version \"5.10\"" in output
    assert ("supports Slicer 5.10 and 5.12; building for Slicer 5.14, which is untested." in output) == warned, output


def test_the_install_puts_everything_beside_the_module_script(installed_module: Path) -> None:
    assert (installed_module / "MultiModalSeg.py").is_file()
    assert sorted(p.name for p in installed_module.glob("*.py")) == ["MultiModalSeg.py"]
    for package in ("MultiModalSegModuleLib", "MultiModalSegSceneLib", "MultiModalSegLib"):
        assert (installed_module / package / "__init__.py").is_file(), package
    library_files = {p.relative_to(REPOSITORY).as_posix() for p in (REPOSITORY / "MultiModalSegLib").rglob("*.py")
                     if "__pycache__" not in p.parts}
    installed_files = {p.relative_to(installed_module).as_posix()
                       for p in (installed_module / "MultiModalSegLib").rglob("*.py")}
    assert library_files <= installed_files
    for resource in ("Resources/UI/MultiModalSeg.ui", "Resources/Icons/MultiModalSeg.png",
                     "Resources/requirements.txt"):
        assert (installed_module / resource).is_file(), resource
    for bundled in ("Models", "SampleData"):
        source = REPOSITORY / "Resources" / bundled
        if source.is_dir():
            expected = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()
                        and not any(part.startswith(".") or part == "__pycache__" for part in p.parts)}
            installed = {p.relative_to(installed_module / "Resources" / bundled).as_posix()
                         for p in (installed_module / "Resources" / bundled).rglob("*") if p.is_file()}
            assert expected <= installed, f"Resources/{bundled} is not installed completely"


def test_the_installed_module_finds_its_resources_and_backend_beside_itself(installed_module: Path) -> None:
    """Run in a fresh Python from the installed folder only, as Slicer would: the layout is 'installed',
    the scene logic resolves as a top-level package, and the bundled backend lists its models."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(installed_module)!r})\n"
        "from MultiModalSegModuleLib.module_layout import find_module_layout, ensure_library_importable\n"
        "from MultiModalSegModuleLib import scene_logic\n"
        f"layout = find_module_layout({str(installed_module)!r})\n"
        "ensure_library_importable(layout)\n"
        "import MultiModalSegLib, MultiModalSegLib.weights as weights\n"
        "print(json.dumps({'installed': layout.installed, 'resources': str(layout.resources_dir),\n"
        "  'library': MultiModalSegLib.__file__, 'bundled': str(weights.bundled_models_dir()),\n"
        "  'scene': scene_logic.result_loader.__name__}))\n"
    )
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "MMSEG_BUNDLED_MODELS")}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               cwd=installed_module.parent, env=environment, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert found["installed"] is True
    assert Path(found["resources"]) == installed_module / "Resources"
    assert Path(found["library"]).parent == installed_module / "MultiModalSegLib"
    assert Path(found["bundled"]).resolve() == (installed_module / "Resources" / "Models").resolve()
    assert found["scene"] == "MultiModalSegSceneLib.result_loader"
