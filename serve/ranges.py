"""HTTP Range parsing: one pure function, half-open results, two error types."""

from __future__ import annotations

import contextlib

__all__ = ["MalformedRange", "MultipleRanges", "RangeNotSatisfiable", "content_range", "parse_range"]


class MalformedRange(ValueError):
    """The Range header is not a single well-formed byte range (answered 400)."""


class MultipleRanges(ValueError):
    """A well-formed header asking for several ranges (answered with the whole file, 200)."""


class RangeNotSatisfiable(ValueError):
    """The range starts at or past the end of the file (answered 416 with ``bytes */size``)."""

    def __init__(self, size: int):
        super().__init__(f"Range starts past the end of the {size}-byte file.")
        self.size = size


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Parse ``bytes=a-b`` / ``a-`` / ``-n`` against ``size``; return half-open ``(start, end)``.

    The end is clamped to the file (clients routinely ask past EOF). A well-formed multi-range
    header raises MultipleRanges: callers answer the whole file with 200 (ignoring Range is always
    allowed), since genome browsers never ask for several ranges at once."""
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: expected bytes=start-end.")
    parts = spec.split(",")
    if len(parts) > 1:
        for part in parts:
            with contextlib.suppress(RangeNotSatisfiable):  # each part must be well formed
                _parse_one(part, size, header)
        raise MultipleRanges(header)
    return _parse_one(spec, size, header)


def _parse_one(spec: str, size: int, header: str) -> tuple[int, int]:
    spec = spec.strip()
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last) or not all(_digits(part) for part in (first, last) if part):
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: expected bytes=start-end.")
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0:
            raise MalformedRange("A suffix range must ask for at least one byte.")
        if size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: the end is before the start.")
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size)


def _digits(text: str) -> bool:
    # ASCII only: str.isdigit() also accepts "²" (which int() rejects) and other scripts' digits;
    # at most 20 digits (past 2^64, and int() refuses more than 4300 digits with a ValueError).
    return text.isascii() and text.isdigit() and len(text) <= 20


def content_range(start: int, end: int, size: int | None) -> str:
    """The Content-Range value for half-open ``[start, end)`` of a ``size``-byte file (``*``: unknown)."""
    return f"bytes {start}-{end - 1}/{'*' if size is None else size}"
