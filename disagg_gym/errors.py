"""The exception that marks a problem with user input (flags, configs, traces, result files).

``disagg-gym`` reports a ``UserError`` (and an ``OSError`` such as an unwritable output path)
as one line ``disagg-gym: error: ...`` with exit status 2. Any other exception is a bug in
disagg-gym and keeps its traceback, so an internal ``ValueError`` is never mistaken for bad
input. ``UserError`` subclasses ``ValueError`` so library callers that catch ``ValueError``
around validation keep working (STYLE.md: bad input raises ``ValueError``).
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with user input; ``str(err)`` is one line naming the bad value."""


def clipped_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut): an error line names
    a bad value without printing a whole file that was read as one.
    """
    try:
        text = repr(value)
    except ValueError:  # an int over Python's str-conversion digit limit
        text = "<huge integer>"
    except RecursionError:  # a deeply nested container
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
