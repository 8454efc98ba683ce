"""The bodies of the module's self-tests, shared by Slicer's self-test and the headless pytest suite.

``MultiModalSegTest`` (in ``MultiModalSeg.py``, run by Slicer and by ``ctest``) and the
tests in ``Testing/module/`` call these same functions, on Slicer's own scene inside the
application and on a headless ``slicer-core`` scene outside it. Each step does real work
through the same code the panel uses (``backend_jobs``, the scene logic, a real backend
subprocess) and raises :class:`SelfTestFailure` with a sentence when something is wrong.

The steps use a temporary model store (``BackendSettings.model_store``), so a self-test's
fine-tuning and rollback never change the user's model versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import backend_jobs
from .backend_commands import BackendSettings
from .model_catalog import ModelChoice
from .sample_data import SampleCase
from .scene_logic import overlays, slice_layers, slice_views, volume_files

__all__ = [
    "SelfTestFailure",
    "check_sample_volumes",
    "load_sample_case",
    "choose_model_for_modalities",
    "segment_case",
    "show_each_overlay",
    "finetune_briefly",
    "roll_back_to_oldest_version",
]

DEFAULT_STEP_TIMEOUT_SECONDS = 600.0


class SelfTestFailure(AssertionError):
    """A self-test step found something wrong; the message says what."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestFailure(message)


def check_sample_volumes(volumes: Mapping[str, Any], case: SampleCase) -> None:
    """Every modality of ``case`` is loaded as a non-empty scalar volume named after the case."""
    for modality in case.modalities:
        node = volumes.get(modality)
        _require(node is not None, f"Sample '{case.sample_name}' has no {modality} volume loaded.")
        image = node.GetImageData()
        _require(image is not None and image.GetNumberOfPoints() > 0,
                 f"Sample volume '{node.GetName()}' has no voxels.")
        _require(node.GetName() == case.node_name(modality),
                 f"Sample volume '{node.GetName()}' should be named '{case.node_name(modality)}'.")


def load_sample_case(scene: Any, case: SampleCase, sample_data_dir: str | Path) -> dict[str, Any]:
    """Read the sample case's files into ``scene`` (headless stand-in for Slicer's SampleData module)."""
    volumes = {}
    for modality, path in case.files(sample_data_dir).items():
        _require(path.is_file(), f"Sample file {path} is missing; the extension's Resources/SampleData is incomplete.")
        volumes[modality] = volume_files.import_volume_file(scene, path, name=case.node_name(modality))
    check_sample_volumes(volumes, case)
    return volumes


def choose_model_for_modalities(models: Iterable[ModelChoice], modalities: Sequence[str]) -> ModelChoice:
    """The first model (bundled ones first) whose modalities are all in ``modalities``."""
    available = set(modalities)
    ordered = sorted(models, key=lambda model: not model.bundled)
    for model in ordered:
        if model.modality_names and set(model.modality_names) <= available:
            return model
    raise SelfTestFailure(f"No installed model takes the modalities {', '.join(modalities)}; "
                          "the extension's Resources/Models is incomplete.")


def segment_case(
    scene: Any,
    settings: BackendSettings,
    model: ModelChoice,
    volumes: Mapping[str, Any],
    device: str = "cpu",
    overlap: float = 0.25,
    timeout: float = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> Any:
    """Run ``predict`` as the panel does and load the result; returns the scene logic's ``LoadedResult``.

    Checks that the segmentation has one segment per label, named as the manifest names them,
    that every output map became an overlay, and that the temporary files are gone.
    """
    job = backend_jobs.start_predict(settings, model.model_id, {m: volumes.get(m) for m in model.modality_names},
                                     device=device, overlap=overlap)
    backend_jobs.run_to_end(job, timeout=timeout)
    loaded = backend_jobs.finish_predict(scene, job)
    _require(not job.work_dir.exists(), f"The temporary folder {job.work_dir} was not removed.")
    segmentation = loaded.segmentation.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    _require(names == list(model.labels), f"The segmentation's segments are {names}, expected {list(model.labels)}.")
    _require(bool(loaded.overlays), "The result has no overlay (attention, probability, uncertainty or level set).")
    return loaded


def show_each_overlay(context: Any, loaded: Any, opacity: float = 0.5) -> list[str]:
    """Show every overlay of ``loaded`` in the slice views, then none; returns the overlay keys shown.

    ``context`` is the scene logic's ``SlicerContext`` (Slicer's own inside the application).
    """
    slice_views.slice_logics_for_views(context.scene, context.application_logic)
    shown: list[str] = []
    for key, node in loaded.overlays.items():
        slice_layers.show_overlay(context.scene, node, opacity)
        shown_node = slice_layers.shown_overlay(context.scene)
        _require(shown_node is not None and shown_node.GetID() == node.GetID(),
                 f"Overlay '{key}' is not shown in the slice views.")
        _require(overlays.overlay_key_of(node) == key, f"Overlay '{key}' lost its key attribute.")
        shown.append(key)
    slice_layers.show_overlay(context.scene, None)
    _require(slice_layers.shown_overlay(context.scene) is None, "The overlay could not be hidden again.")
    return shown


def finetune_briefly(
    scene: Any,
    settings: BackendSettings,
    model: ModelChoice,
    segmentation_node: Any,
    volume_nodes: Mapping[str, Any],
    iterations: int = 2,
    device: str = "cpu",
    patch_size: tuple[int, int, int] | None = None,
    timeout: float = DEFAULT_STEP_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Fine-tune ``model`` for a few iterations on one labeled case, as the panel does; returns the
    backend's result. The model store of ``settings`` gets a new version, which becomes current;
    ``patch_size`` (z, y, x) shortens the iterations (None: the package's patch)."""
    labeled = [backend_jobs.LabeledCase(case_id="selftest", segmentation_node=segmentation_node,
                                        volume_nodes=dict(volume_nodes))]
    job = backend_jobs.start_finetune(scene, settings, model.model_id, list(model.label_entries), labeled,
                                      reference_modality=model.reference_modality, iterations=iterations,
                                      device=device, patch_size=patch_size)
    backend_jobs.run_to_end(job, timeout=timeout)
    result = backend_jobs.finish_finetune(job)
    _require(not job.work_dir.exists(), f"The temporary folder {job.work_dir} was not removed.")
    new_version = backend_jobs.new_version_of(result)
    _require(new_version is not None and new_version[1] > model.version,
             f"Fine-tuning reported no new version of '{model.model_id}' ({result}).")
    return result


def roll_back_to_oldest_version(settings: BackendSettings, model_id: str,
                                timeout: float = 120.0) -> list[backend_jobs.ModelVersion]:
    """Make the oldest version of ``model_id`` current again; returns the versions listed afterwards.

    Needs at least two versions (the bundled one and a fine-tuned one).
    """
    process = backend_jobs.start_list_versions(settings, model_id)
    backend_jobs.run_to_end(process, timeout=timeout)
    versions = backend_jobs.finish_list_versions(process)
    _require(len(versions) >= 2, f"Model '{model_id}' has {len(versions)} version(s); rollback needs two.")
    oldest = min(versions, key=lambda version: version.version)
    _require(not oldest.current, f"Version {oldest.version} of '{model_id}' is current already.")
    process = backend_jobs.start_rollback(settings, model_id, oldest.version)
    backend_jobs.run_to_end(process, timeout=timeout)
    backend_jobs.finish_rollback(process)
    process = backend_jobs.start_list_versions(settings, model_id)
    backend_jobs.run_to_end(process, timeout=timeout)
    after = backend_jobs.finish_list_versions(process)
    current = [version.version for version in after if version.current]
    _require(current == [oldest.version], f"After rollback the current version is {current}, not {oldest.version}.")
    return after
