"""A file's contigs, for a viewer's assembly and first region (GET /files/{dcc}/{local_id}/contigs):
each contig that has data, with its length and record count, and the first record. Read from a
ready file's index and the first blocks of its data (``serve.genomic_index``), or from a bigWig's
header upstream; never the whole file. A ready set never changes, so its answer is cached."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from resources import Artifact, ArtifactStore, ByteRange, SourceFetcher
from serve.errors import HTTPProblem
from serve.files import Files, FileStatus
from serve.genomic_index import (
    IndexFormatError,
    Read,
    bam_contigs,
    bigwig_contigs,
    declared_lengths,
    first_record,
    parse_index,
)

__all__ = ["Contig", "ContigReader", "FileContigs", "bigwig_file_contigs", "indexed_file_contigs"]

log = logging.getLogger("cfdb.serve")
CACHE_SIZE = 1024


@dataclass(frozen=True)
class Contig:
    """A contig with data: its length (declared by the file, or a bound from the index) and the
    number of records the index counts (None when it does not)."""

    name: str
    length: int
    declared: bool
    records: int | None


@dataclass(frozen=True)
class FileContigs:
    """The contigs with data, in file order, and the first record (contig, start, end; 0-based)."""

    contigs: tuple[Contig, ...]
    first: tuple[str, int, int] | None

    def to_json(self) -> dict[str, Any]:
        contigs = [{"name": c.name, "length": c.length, "length_declared": c.declared, "records": c.records}
                   for c in self.contigs]
        first = dict(zip(("contig", "start", "end"), self.first, strict=True)) if self.first else None
        return {"contigs": contigs, "first": first}


def indexed_file_contigs(data: Read, index: bytes) -> FileContigs:
    """The contigs of a BAM (BAI/CSI) or a tabix-indexed file (TBI/CSI), from its index and header."""
    parsed = parse_index(index)
    if parsed.names is None:  # a BAM index: the names and lengths are in the BAM header
        header = bam_contigs(data)
        if len(header) != len(parsed.refs):
            raise IndexFormatError("The BAM header and its index count different contigs.")
        named = [(name, length, True) for name, length in header]
    else:
        offsets = [r.first for r in parsed.refs if r.first is not None]
        assert parsed.columns is not None
        declared = declared_lengths(data, min(offsets), parsed.columns[4]) if offsets else {}
        named = [(name, declared.get(name, 0), name in declared) for name in parsed.names]
    contigs, first = [], None
    for (name, length, is_declared), ref in zip(named, parsed.refs, strict=True):
        if ref.first is None:
            continue
        contigs.append(Contig(name, length if is_declared else max(ref.bound, 1), is_declared, ref.records))
        if first is None:
            first = (name, *first_record(data, ref.first, parsed.columns))
    return FileContigs(tuple(contigs), first)


def bigwig_file_contigs(read: Read) -> FileContigs:
    """The chromosomes of a bigWig (its header declares them); the first record is not looked up."""
    return FileContigs(tuple(Contig(name, length, True, None) for name, length in bigwig_contigs(read)), None)


class ContigReader:
    """Answers GET /files/{dcc}/{local_id}/contigs over the store (ready files) and the fetcher
    (bigWig files, served as their upstream bytes)."""

    def __init__(self, files: Files, store: ArtifactStore, fetcher: SourceFetcher):
        self.files, self.store, self.fetcher = files, store, fetcher
        self._cache: dict[str, FileContigs] = {}

    def contigs(self, dcc: str, local_id: str) -> FileContigs:
        """A ready file's contigs, or a bigWig's; 404 with a sentence for anything else."""
        record = self.files.lookup(dcc, local_id)
        fs = self.files.state(record)
        if fs.state == FileStatus.READY:
            assert fs.manifest is not None and fs.plan.cache_key
            key = fs.plan.cache_key
            if key not in self._cache:
                manifest = fs.manifest
                try:
                    found = indexed_file_contigs(self._stored(key, manifest.data),
                                                 self._stored(key, manifest.index)(0, manifest.index.size))
                except IndexFormatError as exc:
                    log.error("Cannot read the contigs of %s: %s", key, exc)
                    raise HTTPProblem(500, f"The index of this file cannot be read: {exc}") from None
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = found
            return self._cache[key]
        if fs.state == FileStatus.PASSTHROUGH and fs.plan.route.format == "bigWig":
            if not record.access_url:
                raise HTTPProblem(501, "File has no access URL")
            try:
                return bigwig_file_contigs(self._upstream(record.access_url))
            except IndexFormatError as exc:
                raise HTTPProblem(502, f"The upstream bigWig cannot be read: {exc}") from None
        if fs.state == FileStatus.PASSTHROUGH:
            raise HTTPProblem(404, f"A {fs.plan.route.format} file has no contigs to tell: processed files "
                                   "(alignments, intervals) have them once ready, bigWig files always.")
        raise HTTPProblem(404, f"The file is {fs.state.value}: its contigs are known once it is ready "
                               f"(POST /files/{record.dcc}/{local_id} prepares it).")

    def _stored(self, key: str, artifact: Artifact) -> Read:
        def read(start: int, end: int) -> bytes:
            end = min(end, artifact.size)
            return b"".join(self.store.iter_range(key, artifact.name, start, end)) if start < end else b""

        return read

    def _upstream(self, url: str) -> Read:
        def read(start: int, end: int) -> bytes:
            body = self.fetcher.open_range(url, ByteRange(start, end - 1))
            try:
                return b"".join(body.chunks)
            finally:
                body.close()

        return read
