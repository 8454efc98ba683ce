"""The scene logic of MultiModalSeg: MRML nodes <-> files, segmentations, overlays, slice views.

It imports only what the ``slicer-core`` wheel provides (vtkMRML* classes, vtk,
``slicer.util`` functions that need no application) and numpy, never torch or Qt, so it
runs inside Slicer and headless alike, on the real MRML classes. One idea per module:

``errors``               :class:`SceneLogicError`, the exception for problems a user can fix
``headless``             the scene + application logic: Slicer's own, or built without Qt
``volume_geometry``      voxel grids: IJK-to-RAS, comparisons, placing outputs on the input grid
``volume_files``         volume nodes <-> NIfTI/NRRD files (RAS in Slicer, LPS in files)
``terminology``          manifest terminology -> Slicer's segment terminology string
``segment_labels``       the model's label list (value, name, color, terminology), checked
``segmentation_import``  a label map -> segmentation node with names, colors, terminology
``color_maps``           the heat and the blue-white-red color nodes
``overlays``             attention / probability / uncertainty heat maps, level set + zero contour
``slice_layers``         background, foreground overlay and opacity of the slice views
``slice_views``          slice logics of Red/Yellow/Green, fitting, centring on a segment
``slice_rendering``      offscreen PNGs of slice views through Slicer's displayable managers
``result_loader``        a ``predict`` output folder (result.json) -> scene
``finetune_export``      segmentations + volumes -> fine-tune case files and cases.json
``scene_files``          save / load a ``.mrml`` scene with its data files, relative paths
``scene_writer``         command line: result folder -> scene.mrml + slice-view pictures

Inside Slicer this folder is imported as the top-level package ``MultiModalSegSceneLib``
(the module's folder is on ``sys.path``); from the repository as
``MultiModalSeg.MultiModalSegSceneLib``. Its modules import each other relatively, so
both work. Nothing is imported here, so ``python -m ...scene_writer`` loads only what it uses.
"""
