"""Functions the bounded child runs in tests/test_bounded.py (imported in the child, under its memory limit: stdlib
only)."""

from __future__ import annotations

import os


def pid() -> int:
    return os.getpid()


def hog(mb: int) -> int:
    return len(bytearray(mb << 20))


def boom() -> None:
    raise ValueError("nope")
