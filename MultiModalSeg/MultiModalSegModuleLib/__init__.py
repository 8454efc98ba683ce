"""The Qt-free half of the MultiModalSeg Slicer module: everything the panel does that needs no widget.

The module file (``MultiModalSeg.py``) is the thin Qt panel; what it does lives here so it
runs, and is tested, without the Slicer application. Nothing here imports ``qt``, ``ctk``
or torch; the modules that touch MRML nodes use only what the ``slicer-core`` wheel
provides, through the scene logic (``MultiModalSegSceneLib``). One idea per module:

``module_layout``     where ``Resources/`` and ``MultiModalSegLib`` are: repository clone or installed
``backend_process``   one backend run: subprocess, JSON-line events, Cancel (process tree), temp folders
``backend_commands``  the backend's command lines, its Python and environment
``backend_jobs``      predict / fine-tune / versions / rollback: export, start, import (calls the scene logic)
``model_catalog``     the model packages the panel offers, with the summary of their card
``modality_matching`` re-exports MultiModalSegLib.modality_matching: volumes to modalities by name patterns
``dependencies``      torch and the other packages in Slicer's Python: checked by version, installed on request
``sample_data``       the bundled sample cases (file names, modalities) for SampleData and the self-tests
``self_test_steps``   the self-test bodies, run by the Slicer self-test and by pytest alike
``scene_logic``       the one place that imports the scene logic (its package name differs by layout)

Inside Slicer this folder is imported as the top-level package ``MultiModalSegModuleLib``
(the module's folder is on ``sys.path``); from the repository as
``MultiModalSeg.MultiModalSegModuleLib``. Its modules import each other relatively, so both
work. Nothing is imported here, so importing one module loads only what it uses.
"""
