"""HTTP Range parsing: one pure function, half-open results, two error types."""

from __future__ import annotations

__all__ = ["MalformedRange", "RangeNotSatisfiable", "content_range", "parse_range"]


class MalformedRange(ValueError):
    """The Range header is not a single well-formed byte range (answered 400)."""


class RangeNotSatisfiable(ValueError):
    """The range starts at or past the end of the file (answered 416 with ``bytes */size``)."""

    def __init__(self, size: int):
        super().__init__(f"Range starts past the end of the {size}-byte file.")
        self.size = size


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Parse ``bytes=a-b`` / ``a-`` / ``-n`` against ``size``; return half-open ``(start, end)``.

    The end is clamped to the file (clients routinely ask past EOF). Multi-range is refused as
    malformed: genome browsers never send it, and one range keeps every answer a plain 206."""
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: expected bytes=start-end.")
    spec = spec.strip()
    if "," in spec:
        raise MalformedRange("Multiple byte ranges are not supported; request one range at a time.")
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
    # ASCII only: str.isdigit() also accepts "²" (which int() rejects) and other scripts' digits.
    return text.isascii() and text.isdigit()


def content_range(start: int, end: int, size: int) -> str:
    """The Content-Range value for half-open ``[start, end)`` of a ``size``-byte file."""
    return f"bytes {start}-{end - 1}/{size}"
