"""What ``tools/reproduce_dtc.py`` and ``tools/reproduction`` share: reading back a finished arm, evaluation bars."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from MultiModalSegLib.errors import MultiModalSegError


def finished_arm(output: Path, key: str, iterations: int, announce: bool = True) -> dict[str, Any] | None:
    """The ``result.json`` of an arm already trained for ``iterations`` in ``output``, else None.

    Raises :class:`MultiModalSegError` when ``output`` holds a finished training of another
    length (a different budget must not be mixed into one table). ``announce`` prints that the
    arm is skipped.
    """
    result_path = output / "result.json"
    if not (result_path.is_file() and (output / "last" / "manifest.json").is_file()):
        return None
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if int(result.get("iterations", -1)) != iterations:
        raise MultiModalSegError(
            f"{output} holds a finished training of {result.get('iterations')} iterations, not {iterations}; "
            "use another --work folder, or delete that arm's folder to train it again.")
    if announce:
        print(f"[{key}] trained already ({result['iterations']} iterations), skipping", flush=True)
    return result


def evaluation_bar(stage: str) -> Callable[[int, int, dict[str, Any]], None] | None:
    """``evaluate_model``'s progress callback drawing a bar on stderr when it is a terminal (else None)."""
    from MultiModalSegLib.human_progress import stderr_progress

    terminal = stderr_progress()
    if terminal is None:
        return None

    def show(done: int, total: int, info: dict[str, Any]) -> None:
        terminal.update(stage, done, total, str(info.get("case_id", "")) if info else "")

    return show
