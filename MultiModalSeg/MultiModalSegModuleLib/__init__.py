"""The Qt-free half of the MultiModalSeg Slicer module: everything the panel does that needs no widget.

The module file (``MultiModalSeg.py``) wires the Qt panel to ``panel_controller``; what the
panel does lives here so it runs, and is tested, without the Slicer application. Nothing here
imports ``qt``, ``ctk`` or torch; the modules that touch MRML nodes use only what the
``slicer-core`` wheel provides, through the scene logic (``MultiModalSegSceneLib``). One idea
per module:

``panel_controller``   the panel's behaviour: every rule, user action and job lifecycle (the widget only wires)
``panel_state``        what the panel shows, as plain data, and the rules for its buttons
``panel_parameters``   the panel's state on the module's parameter node (saved with the scene)
``input_selection``    which volumes can be inputs, the default model, filling the input rows
``finetune_cases``     the labeled and unlabeled cases the Fine-tune section offers
``overlay_choices``    the overlay selector's entries
``module_layout``      where ``Resources/`` and ``MultiModalSegLib`` are: repository clone or installed
``module_reload``      what the developer's Reload forgets (the module's packages)
``supported_versions`` the Slicer releases the module supports (5.10, 5.12: Python 3.12)
``backend_process``    one backend run: subprocess, JSON-line events, Cancel (process tree), temp folders
``backend_commands``   the backend's command lines, its Python and environment
``backend_jobs``       predict / fine-tune / versions / rollback: export, start, import (calls the scene logic)
``model_catalog``      the model packages the panel offers, with the summary of their card
``modality_matching``  re-exports MultiModalSegLib.modality_matching: volumes to modalities by name patterns
``dependencies``       torch and the other packages in Slicer's Python: checked by version, installed on request
``sample_data``        the bundled sample cases (files, modalities, checksums) for SampleData and the self-tests
``self_test_steps``    the self-test bodies, run by the Slicer self-test and by pytest alike
``scene_logic``        the one place that imports the scene logic (its package name differs by layout)

Inside Slicer this folder is imported as the top-level package ``MultiModalSegModuleLib``
(the module's folder is on ``sys.path``); from the repository as
``MultiModalSeg.MultiModalSegModuleLib`` (``MultiModalSeg/`` is a namespace package there: it
must hold no ``__init__.py``, which Slicer would load as a module). Its modules import each other
relatively, so both work. Nothing is imported here, so importing one module loads only what it uses.
"""
