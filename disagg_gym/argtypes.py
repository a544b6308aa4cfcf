"""Argparse value types shared by every ``disagg-gym`` command (core and agents)."""

from __future__ import annotations

import argparse


def positive_float(text: str) -> float:
    """Argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (got {text!r})") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number (got {text!r})")
    return v


def nonneg_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (got {text!r})") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer (got {text!r})")
    return v


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (got {text!r})") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (got {text!r})")
    return v
