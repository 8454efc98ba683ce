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
