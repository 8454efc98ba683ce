"""MultiModalSegLib: the backend of MultiModalSeg (MAML and DTC segmentation).

Importing the package is cheap: torch, SimpleITK and the networks are imported lazily
by the modules that run them, so ``mmseg --help`` and file checks stay fast.
The package never imports slicer, qt, ctk or vtk (see DESIGN.md).
"""

__version__ = "0.1.0"

from MultiModalSegLib.errors import MultiModalSegError

__all__ = ["MultiModalSegError", "__version__"]
