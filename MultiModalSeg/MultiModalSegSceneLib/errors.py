"""The one exception type for scene-logic errors a user can cause.

A wrong or missing file, a result folder that does not belong to the loaded image, a
segment name the model does not know: each raises :class:`SceneLogicError` with a
sentence that says what went wrong and what to do. The Qt module shows that sentence in a
message box; the scene writer prints it and exits with code 2. Programming errors keep
their own exception types and tracebacks.

It subclasses :class:`ValueError` so callers that already catch bad values keep working,
and mirrors ``MultiModalSegLib.errors.MultiModalSegError`` without importing the backend
(this layer must import nothing beyond what the ``slicer-core`` wheel provides).
"""

from __future__ import annotations

__all__ = ["SceneLogicError"]


class SceneLogicError(ValueError):
    """A problem with the user's scene, files or result folder, explained in a sentence."""
