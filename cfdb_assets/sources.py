"""What a source file is, before any tool runs on it: its compression and what its first bytes say
it holds; and the error and options every pipeline shares. Pure: imports neither Dagster nor
Starlette."""

from __future__ import annotations

import os
import shlex
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cfdb_assets.memory import to_bytes

__all__ = ["SNIFF_BYTES", "Incoming", "PipelineError", "ToolOptions", "binary_kind", "link_or_copy", "sniff", "sniff_head"]

SNIFF_BYTES = 64 * 1024

# Leading bytes of formats that must never be mistaken for text (reference §11.18: starch labelled
# BED poisoned the original's cache).
_MAGIC = (
    (b"\xca\x5c\xad\xe5", "BEDOPS starch"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"\xeb\xf2\x89\x87", "bigBed"),
    (b"\x26\xfc\x8f\x88", "bigWig"),
    (b"BAM\x01", "BAM"),
    (b"CRAM", "CRAM"),
    (b"\x89HDF", "HDF5"),
    (b"\x1f\x8b", "gzip (compressed twice)"),
)


class PipelineError(Exception):
    """The source cannot be turned into artifacts (bad content, empty result, unreadable input).

    Permanent: retrying the same bytes gives the same error."""

    permanent = True


@dataclass(frozen=True)
class ToolOptions:
    """How the tools run (defaults: resources.settings). Threads and sort memory never change the
    bytes; the compression level does, and so is also part of the cache key."""

    threads: int
    sort_memory: str  # per thread for samtools sort (-m); GNU sort's buffer is the threads' total
    compression_level: int

    @property
    def sort_buffer(self) -> str:
        """GNU sort's -S: the per-thread memory times the threads (one sort uses them all)."""
        return f"{to_bytes(self.sort_memory) * self.threads // 1024}K"


class _Spool(Protocol):  # resources.spool.Spool
    local: bool  # the bytes are someone's file read in place, not our copy

    def reader(self) -> BinaryIO: ...
    def result(self) -> object: ...


@dataclass(frozen=True)
class Incoming:
    """A source for the pipelines: a file on disk, or a download still arriving in ``path`` (a
    spool). Steps that stream read ``open()`` (it waits for bytes not yet in); steps that need the
    whole file call ``complete()`` first, which also raises the download's error."""

    path: Path
    spool: _Spool | None = None

    @classmethod
    def of(cls, source: Path | Incoming) -> Incoming:
        return source if isinstance(source, Incoming) else cls(Path(source))

    @property
    def in_place(self) -> bool:
        """Whether ``path`` holds every byte from the start (a file on disk, or a file:// source read
        in place), so that tools may be given the path itself rather than a stream."""
        return self.spool is None or self.spool.local

    @property
    def shared(self) -> bool:
        """Whether ``path`` belongs to someone else (a file:// source): never link it into a result."""
        return self.spool is not None and self.spool.local

    def open(self) -> BinaryIO:
        """A stream over the source from its first byte."""
        return self.spool.reader() if self.spool else open(self.path, "rb")

    def tool_input(self) -> tuple[str, BinaryIO | None]:
        """What a tool reads: (its file argument, the stdin to feed it): the quoted path of a file in
        place (no copy through this process), else ``-`` and a stream of the arriving bytes."""
        if self.in_place:
            return shlex.quote(str(self.path)), None
        return "-", self.open()

    def complete(self) -> Path:
        """Wait for the last byte (verified); the file's path."""
        if self.spool:
            self.spool.result()
        return self.path

    def head(self) -> bytes:
        """The first 64 KiB as stored (fewer when the file is smaller)."""
        with self.open() as fh:
            return fh.read(SNIFF_BYTES)


def sniff(path: Path | Incoming) -> tuple[bool, bytes]:
    """(gzip-compressed?, up to 64 KiB of the content after decompression) from the file's head."""
    return sniff_head(Incoming.of(path).head())


def sniff_head(raw: bytes) -> tuple[bool, bytes]:
    """``sniff`` of a head already read."""
    if raw[:2] != b"\x1f\x8b":
        return False, raw
    out, data = b"", raw
    try:
        while data[:2] == b"\x1f\x8b" and len(out) < SNIFF_BYTES:  # BGZF is many gzip members
            member = zlib.decompressobj(wbits=31)
            out += member.decompress(data, SNIFF_BYTES - len(out))
            if not member.eof:
                break
            data = member.unused_data
    except zlib.error:
        raise PipelineError("The file starts like gzip but is not valid gzip data.") from None
    return True, out


def binary_kind(head: bytes) -> str | None:
    """What a non-text head is (a known format, or just binary), or None for text."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "binary data" if b"\x00" in head else None


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem
        shutil.copyfile(source, dest)
