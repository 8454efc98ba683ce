"""The module's self-test, run headless: the same step functions Slicer's ``MultiModalSegTest`` runs.

On a ``slicer-core`` scene (the stand-in for the Slicer application) with the bundled sample
cases, the steps load the samples, segment them with the real backend in a real subprocess,
show each overlay in the slice views, fine-tune for two iterations and roll back. The model is
a tiny untrained package (the stand-in for the bundled weights, which would take minutes on
this CPU); the model store is a temporary folder.
"""

from __future__ import annotations


import pytest
from module_testing import REPOSITORY, TINY_MODEL_ID

from MultiModalSeg.MultiModalSegModuleLib import backend_jobs, model_catalog, sample_data, self_test_steps
from MultiModalSeg.MultiModalSegModuleLib.backend_commands import BackendSettings
from MultiModalSeg.MultiModalSegSceneLib.errors import SceneLogicError
from MultiModalSeg.MultiModalSegSceneLib.headless import create_headless_slicer
from MultiModalSeg.MultiModalSegSceneLib.segmentation_import import import_labelmap_file_as_segmentation

SAMPLE_DATA_DIR = REPOSITORY / "Resources" / "SampleData"
LIVER = sample_data.sample_case_by_name("MultiModalSegLiverPhantom")

needs_samples = pytest.mark.skipif(not LIVER.is_available(SAMPLE_DATA_DIR), reason="Resources/SampleData is missing")


@needs_samples
@pytest.mark.parametrize("case", sample_data.SAMPLE_CASES, ids=lambda case: case.sample_name)
def test_load_sample_case(case: sample_data.SampleCase) -> None:
    context = create_headless_slicer()
    volumes = self_test_steps.load_sample_case(context.scene, case, SAMPLE_DATA_DIR)
    assert sorted(volumes) == sorted(case.modalities)


@needs_samples
@pytest.mark.slow
def test_segment_show_overlays_finetune_and_roll_back(backend_settings: BackendSettings) -> None:
    context = create_headless_slicer()
    volumes = self_test_steps.load_sample_case(context.scene, LIVER, SAMPLE_DATA_DIR)
    model = self_test_steps.choose_model_for_modalities(model_catalog.list_model_choices(), LIVER.modalities)
    assert model.model_id == TINY_MODEL_ID

    loaded = self_test_steps.segment_case(context.scene, backend_settings, model, volumes)
    assert loaded.reference_volume.GetID() == volumes["venous"].GetID()
    assert set(loaded.overlays) == {"attention:arterial", "attention:venous", "probability:liver",
                                    "probability:tumor", "uncertainty"}

    shown = self_test_steps.show_each_overlay(context, loaded, opacity=0.4)
    assert shown == list(loaded.overlays)

    # The user's corrected segmentation: the phantom's true label (the tiny model segments nothing useful).
    corrected = import_labelmap_file_as_segmentation(
        context.scene, SAMPLE_DATA_DIR / "MultiModalSegLiverPhantom_label.nrrd", model.label_entries,
        volumes["venous"], name="corrected")
    result = self_test_steps.finetune_briefly(context.scene, backend_settings, model, corrected, volumes,
                                              iterations=2, patch_size=(16, 64, 64))
    assert backend_jobs.new_version_of(result) == (TINY_MODEL_ID, 2)
    sentence = backend_jobs.describe_finetune_result(result, TINY_MODEL_ID)
    assert sentence.endswith(f"{TINY_MODEL_ID} version 2 is now current.")

    versions = self_test_steps.roll_back_to_oldest_version(backend_settings, model.model_id)
    assert [(v.version, v.current, v.source) for v in versions] == [(1, True, "bundled"), (2, False, "user")]
    assert not any((backend_settings.work_parent).iterdir()), "a temporary run folder was left behind"


def test_a_backend_error_reaches_the_user_as_its_sentence_and_the_files_go(backend_settings: BackendSettings) -> None:
    context = create_headless_slicer()
    volume = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "case_venous")
    import numpy as np
    from slicer.util import updateVolumeFromArray

    updateVolumeFromArray(volume, np.zeros((4, 8, 8), dtype=np.int16))
    job = backend_jobs.start_predict(backend_settings, "no-such-model", {"venous": volume}, device="cpu")
    assert (job.work_dir / "inputs" / "venous.nii.gz").is_file()
    backend_jobs.run_to_end(job, timeout=120)
    with pytest.raises(backend_jobs.BackendRunError, match="No model package 'no-such-model' was found"):
        backend_jobs.finish_predict(context.scene, job)
    assert not job.work_dir.exists()


def test_segmenting_without_any_input_volume_is_refused_with_a_sentence(backend_settings: BackendSettings) -> None:
    with pytest.raises(SceneLogicError, match="select the volume of at least one modality"):
        backend_jobs.start_predict(backend_settings, TINY_MODEL_ID, {"arterial": None, "venous": None})
    assert not backend_settings.work_parent.exists() or not any(backend_settings.work_parent.iterdir())
