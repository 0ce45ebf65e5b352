"""Byte ranges, shared by everything that serves bytes (the store, the fetcher's proxied reads, the
HTTP app): a Range header is parsed once into a ``ByteRange`` (syntax only), which is resolved
against a size into a half-open span. Pure: no I/O beyond ``read_span`` on an open file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "ByteRange",
    "MalformedRange",
    "MultipleRanges",
    "RangeNotSatisfiable",
    "content_range",
    "parse_byte_range",
    "parse_range",
    "read_span",
]

CHUNK = 256 * 1024


class MalformedRange(ValueError):
    """The Range header is not a single well-formed byte range (answered 400)."""


class MultipleRanges(ValueError):
    """A well-formed header asking for several ranges (answered with the whole file, 200)."""


class RangeNotSatisfiable(ValueError):
    """The range starts at or past the end of the file (answered 416 with ``bytes */size``)."""

    def __init__(self, size: int):
        super().__init__(f"Range starts past the end of the {size}-byte file.")
        self.size = size


@dataclass(frozen=True)
class ByteRange:
    """One range of a Range header before it meets a file: ``first-last``, ``first-`` (``last`` is
    None) or the final ``suffix`` bytes (``first`` is None)."""

    first: int | None
    last: int | None

    @property
    def header(self) -> str:
        """The Range header value asking for this range (forwarded upstream as the client sent it)."""
        return f"bytes={'' if self.first is None else self.first}-{'' if self.last is None else self.last}"

    def resolve(self, size: int) -> tuple[int, int]:
        """Half-open ``(start, end)`` within a ``size``-byte file, the end clamped to the file (clients
        routinely ask past EOF); RangeNotSatisfiable when it starts at or past the end."""
        if self.first is None:  # suffix: the last n bytes
            assert self.last is not None
            if size == 0:
                raise RangeNotSatisfiable(size)
            return max(0, size - self.last), size
        if self.first >= size:
            raise RangeNotSatisfiable(size)
        end = size if self.last is None else self.last + 1
        return self.first, min(end, size)


def parse_byte_range(header: str) -> ByteRange | None:
    """The single range a Range header asks for; None for a well-formed multi-range (callers
    answer the whole file with 200: ignoring Range is always allowed, and genome browsers never ask
    for several ranges at once). Raises MalformedRange."""
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: expected bytes=start-end.")
    parts = [_parse_one(part, header) for part in spec.split(",")]  # each part must be well formed
    return parts[0] if len(parts) == 1 else None


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Parse and resolve in one call: half-open ``(start, end)``; raises MalformedRange,
    MultipleRanges or RangeNotSatisfiable."""
    byte_range = parse_byte_range(header)
    if byte_range is None:
        raise MultipleRanges(header)
    return byte_range.resolve(size)


def _parse_one(spec: str, header: str) -> ByteRange:
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last) or not all(_digits(part) for part in (first, last) if part):
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: expected bytes=start-end.")
    if not first:
        if int(last) == 0:
            raise MalformedRange("A suffix range must ask for at least one byte.")
        return ByteRange(None, int(last))
    if last and int(last) < int(first):
        raise MalformedRange(f"Invalid Range header {header[:80]!r}: the end is before the start.")
    return ByteRange(int(first), int(last) if last else None)


def _digits(text: str) -> bool:
    # ASCII only: str.isdigit() also accepts "²" (which int() rejects) and other scripts' digits;
    # at most 20 digits (past 2^64, and int() refuses more than 4300 digits with a ValueError).
    return text.isascii() and text.isdigit() and len(text) <= 20


def content_range(start: int, end: int, size: int | None) -> str:
    """The Content-Range value for half-open ``[start, end)`` of a ``size``-byte file (``*``: unknown)."""
    return f"bytes {start}-{end - 1}/{'*' if size is None else size}"


def read_span(fh: BinaryIO, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of an open file in chunks (fewer if the file is shorter); closes it."""
    with fh:
        fh.seek(start)
        remaining = end - start
        while remaining > 0:
            data = fh.read(min(chunk, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
