"""Errors raised on bad input.

Every error about a user's data names the file and, where it applies, the row
(1-based, as a text editor shows it) or the time in seconds, and says what is
wrong, so that the message alone is enough to fix the input.
"""

from __future__ import annotations

from pathlib import Path


class MMAffectError(Exception):
    """Base class of the errors mmaffect raises on purpose."""


class DataError(MMAffectError, ValueError):
    """A data file is missing, unreadable or inconsistent.

    >>> str(DataError("end before start", path="t.csv", row=3))
    't.csv: row 3: end before start'
    >>> str(DataError("no face found", path="v.avi", time=12.5))
    'v.avi: at 12.50 s: no face found'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        time: float | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else Path(path)
        self.row = row
        self.time = time
        parts = []
        if path is not None:
            parts.append(str(path))
        if row is not None:
            parts.append(f"row {row}")
        if time is not None:
            parts.append(f"at {time:.2f} s")
        parts.append(message)
        super().__init__(": ".join(parts))


class ConfigError(MMAffectError, ValueError):
    """A configuration key or value is invalid."""
