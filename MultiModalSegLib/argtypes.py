"""argparse ``type=`` converters shared by the CLI verbs (a bad value becomes argparse's usage error)."""

from __future__ import annotations

import argparse


def _int_at_least(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"'{text}' {rule}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _int_at_least(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return _int_at_least(text, 0, "must be 0 or more")


def add_postprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--largest-component`` / ``--no-postprocessing`` and ``--tta``, shared by predict and evaluate."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--largest-component", dest="largest_component", action="store_const", const=True,
                        default=None, help="keep only the largest connected component of every label (default: of "
                                           "the labels the model's plan chose on validation)")
    choice.add_argument("--no-postprocessing", dest="largest_component", action="store_const", const=False,
                        help="keep every component of every label (skip the plan's post-processing)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time mirroring: average over flipped copies (4-8x the inference time)")
