"""The one exception type for errors a user can cause.

Wrong file, missing modality, mismatched geometry, corrupt weights: each raises
:class:`MultiModalSegError` with a sentence that says what went wrong and what to do.
The CLI turns it into an ``{"event": "error", ...}`` line and a non-zero exit code;
programming errors keep their own exception types and tracebacks.
"""

from typing import Any


class MultiModalSegError(Exception):
    """A problem with the user's input, files or model package, explained in a sentence.

    ``details`` are extra fields for the CLI's ``error`` event (e.g. ``kept_weights``: where the
    trained weights went when their destination could not be written).
    """

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.details = details
