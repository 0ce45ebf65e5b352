"""The tool pipelines: source file → sorted, block-compressed data (+ index where the sort can write
it in the same pass) → index.

Each step is a shell pipeline run by ``cfdb_assets.tools.run``. Pure: imports neither Dagster nor
Starlette.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from cfdb_assets.formats import ALIGNMENTS, INTERVALS, Route
from cfdb_assets.tools import ToolError, run

__all__ = [
    "BAI_MAX",
    "PipelineError",
    "ToolOptions",
    "build_index",
    "build_sorted",
    "index_kind_of",
    "sniff",
]

BAI_MAX = 2**29 - 1  # BAI/TBI cannot index coordinates beyond this; CSI can
INDEX_KINDS = ("bai", "tbi", "csi")
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
    sort_memory: str  # per thread for samtools sort; the whole buffer for GNU sort
    compression_level: int


def sniff(path: Path) -> tuple[bool, bytes]:
    """(gzip-compressed?, up to 64 KiB of the content after decompression) from the file's head."""
    with open(path, "rb") as fh:
        raw = fh.read(SNIFF_BYTES)
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


def _binary_kind(head: bytes) -> str | None:
    """What a non-text head is (a known format, or just binary), or None for text."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "binary data" if b"\x00" in head else None


def _check_content(route: Route, source: Path) -> bool:
    """Refuse bytes that are not what the route expects; returns whether the source is gzip."""
    if route.format == "bigBed":
        with open(source, "rb") as fh:
            head = fh.read(4)
        if head != b"\xeb\xf2\x89\x87":
            found = _binary_kind(head) or "text"
            raise PipelineError(f"The file is labelled bigBed but its bytes are {found}, not bigBed.")
        return False
    gzipped, head = sniff(source)
    found = _binary_kind(head)
    if route.family == ALIGNMENTS and found == "BAM":
        return gzipped  # SAM and BAM are both read by samtools, whatever the label says
    if found:
        raise PipelineError(
            f"The file is labelled {route.format} but its bytes are {found}; "
            f"it cannot be processed as {route.format}. Check the catalog's file_format."
        )
    return gzipped


def build_sorted(route: Route, source: Path, workdir: Path, opts: ToolOptions) -> Path:
    """Turn a downloaded source into the sorted, block-compressed data artifact (in ``workdir``).

    For alignments the index is written in the same pass, next to the data (``<data>.bai|.csi``);
    ``index_kind_of`` finds it."""
    gzipped = _check_content(route, source)
    if route.family == ALIGNMENTS:
        return _sorted_alignments(route, source, workdir, opts)
    if route.family == INTERVALS:
        return _sorted_intervals(route, source, gzipped, workdir, opts)
    raise PipelineError(f"{route.format} files are not processed (family {route.family}).")


def index_kind_of(data: Path) -> str | None:
    """The kind of an index already sitting next to ``data`` (written by the sort), if any."""
    for kind in INDEX_KINDS:
        if data.with_name(f"{data.name}.{kind}").is_file():
            return kind
    return None


def build_index(route: Route, data: Path, workdir: Path, opts: ToolOptions) -> tuple[Path, str]:
    """Index the data artifact; returns the index file (in ``workdir``) and its kind (bai/tbi/csi)."""
    link = workdir / data.name
    if link.resolve() != data.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(data)  # index tools write next to their input: keep that in workdir
    q = shlex.quote(link.name)
    if route.family == ALIGNMENTS:
        kind = "csi" if _max_reference_length(link, workdir) > BAI_MAX else "bai"
        run(f"samtools index {'-c' if kind == 'csi' else '-b'} -@ {opts.threads} -o {q}.{kind} {q}", workdir)
        return workdir / f"{link.name}.{kind}", kind
    try:
        run(f"tabix -f -p {route.preset} {q}", workdir)
        return workdir / f"{link.name}.tbi", "tbi"
    except ToolError as exc:
        if "csi index" not in str(exc).lower():
            raise
    # A coordinate beyond 2^29-1: only CSI can hold it.
    run(f"tabix -f -C -p {route.preset} {q}", workdir)
    return workdir / f"{link.name}.csi", "csi"


def _max_reference_length(alignments: Path, workdir: Path) -> int:
    try:
        header = run(f"samtools view -H {shlex.quote(str(alignments))}", workdir)
    except ToolError as exc:
        raise PipelineError(f"The alignment file's header cannot be read: {exc}") from None
    lengths = [int(m) for m in re.findall(r"^@SQ\t.*?\bLN:(\d+)", header, flags=re.MULTILINE)]
    return max(lengths, default=0)


def _sorted_alignments(route: Route, source: Path, workdir: Path, opts: ToolOptions) -> Path:
    out = workdir / "sorted.bam"
    src = shlex.quote(str(source))
    is_bam = sniff(source)[1].startswith(b"BAM\x01")
    if is_bam:
        # A BAM cut short lacks its EOF block; threaded readers may then exit 0 on partial data.
        try:
            run(f"samtools quickcheck {src}", workdir)
        except ToolError:
            raise PipelineError("The BAM file is truncated or damaged (samtools quickcheck failed).") from None
    kind = "csi" if _max_reference_length(source, workdir) > BAI_MAX else "bai"
    index = workdir / f"sorted.bam.{kind}"
    if is_bam and _already_sorted(source, index, kind, workdir, opts):
        _link_or_copy(source, out)
    else:
        index.unlink(missing_ok=True)
        (workdir / "sort_tmp").mkdir(exist_ok=True)
        try:
            # --write-index builds the index in the sort's output pass: no second read of the data.
            # --no-PG: no @PG line with our work path, so a rebuild gives the same bytes.
            run(
                f"samtools sort -@ {opts.threads} -m {opts.sort_memory} -l {opts.compression_level} "
                f"-T sort_tmp/part --no-PG --write-index -o {out.name}##idx##{index.name} {src}",
                workdir,
            )
        except ToolError as exc:
            raise PipelineError(f"The {route.format} file cannot be sorted: {exc}") from None
    if _record_count(out, index) == 0:
        raise PipelineError(f"Refusing to publish an empty {route.format} artifact: the file has no records.")
    return out


_UNSORTED = ("unsorted", "not continuous", "not in a single block")


def _already_sorted(source: Path, index: Path, kind: str, workdir: Path, opts: ToolOptions) -> bool:
    """Is this BAM coordinate-sorted? Indexing it proves positions never decrease within a
    reference and each reference is one block (htslib refuses otherwise); the index then shows
    whether references come in header order. The header's SO tag alone is not trusted. This
    index-only path costs ~6 s/GB instead of a sort."""
    flag = "-c" if kind == "csi" else "-b"
    try:
        run(f"samtools index {flag} -@ {opts.threads} -o {index.name} {shlex.quote(str(source))}", workdir)
    except ToolError as exc:
        if any(reason in str(exc).lower() for reason in _UNSORTED):
            return False
        raise PipelineError(f"The BAM file cannot be read: {exc}") from None
    return _references_in_header_order(source, index)


def _references_in_header_order(bam: Path, index: Path) -> bool:
    """Where each reference's records start in the file, in header order, must only grow."""
    import pysam

    last = -1
    with pysam.AlignmentFile(str(bam), "rb", index_filename=str(index)) as aln:
        for stat in aln.get_index_statistics():
            if stat.total == 0:
                continue
            if next(aln.fetch(stat.contig), None) is None:  # only unmapped reads placed there
                continue
            offset = aln.tell()
            if offset < last:
                return False
            last = offset
    return True


def _record_count(bam: Path, index: Path) -> int:
    import pysam

    with pysam.AlignmentFile(str(bam), "rb", index_filename=str(index)) as aln:
        return sum(stat.total for stat in aln.get_index_statistics()) + aln.nocoordinate


# Per preset: the sort keys, and which lines are headers (kept out of the sort, in their original
# order, at the top of the artifact).
_INTERVAL_SORT = {"bed": "-k1,1 -k2,2n", "vcf": "-k1,1 -k2,2n", "gff": "-k1,1 -k4,4n"}
_HEADER = {
    "bed": re.compile(r"^(#|track(\s|$)|browser(\s|$))"),
    "vcf": re.compile(r"^#"),
    "gff": re.compile(r"^#"),
}
# The same, for grep -E in the C locale, plus blank lines: what never goes into the sorted body.
_NOT_DATA = {
    "bed": "^(#|track([[:space:]]|$)|browser([[:space:]]|$)|[[:space:]]*$)",
    "vcf": "^(#|[[:space:]]*$)",
    "gff": "^(#|[[:space:]]*$)",
}


def _leading_header(path: Path, gzipped: bool, preset: str) -> list[str]:
    """The header lines before the first data line (blank lines skipped; stops at ##FASTA)."""
    opener = gzip.open if gzipped else open
    lines = []
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith("##FASTA") or not _HEADER[preset].match(line):
                break
            # tabix skips only '#' lines: BED's track/browser lines become comments, kept for the record.
            lines.append(line if line.startswith("#") else f"#{line}")
    return lines


def _sorted_intervals(route: Route, source: Path, gzipped: bool, workdir: Path, opts: ToolOptions) -> Path:
    out = workdir / route.data_name
    if route.format == "bigBed":
        bed = workdir / "source.bed"
        _bigbed_to_bed(source, bed)
        source, gzipped = bed, False
    if route.format == "GTF":
        # Gosling parses GFF3 only: convert first (gffread keeps genes, comments and attributes).
        src = shlex.quote(str(source))
        decompress = f"bgzip -dc -@ {opts.threads} {src}" if gzipped else f"cat {src}"
        try:
            run(f"{decompress} > source.gtf && gffread --keep-genes --keep-comments -F -o source.gff3 source.gtf", workdir)
        except ToolError as exc:
            raise PipelineError(f"The GTF file cannot be converted to GFF3: {exc}") from None
        source, gzipped = workdir / "source.gff3", False
    src = shlex.quote(str(source))
    header = _leading_header(source, gzipped, route.preset)
    (workdir / "header.txt").write_text("".join(f"{line}\n" for line in header), encoding="utf-8")

    # The body: everything but header, comment and blank lines (grep is far cheaper than awk here:
    # this pass sees every byte). CR line endings are stripped only when the file has them.
    steps = [f"bgzip -dc -@ {opts.threads} {src}" if gzipped else f"cat {src}"]
    if b"\r" in sniff(source)[1]:
        steps.append("tr -d '\\r'")
    if route.preset == "gff":
        steps.append("sed '/^##FASTA/,$d'")  # the FASTA section is not features
    steps.append(f"{{ grep -Ev '{_NOT_DATA[route.preset]}' || [ $? -eq 1 ]; }}")
    steps.append(
        f"sort -t \"$(printf '\\t')\" {_INTERVAL_SORT[route.preset]} -S {opts.sort_memory} "
        f"--parallel={opts.threads} -T sort_tmp"
    )
    # Header first, then the body once sort starts emitting; no data line at all is refused below.
    steps.append('{ if IFS= read -r first; then cat header.txt; printf "%s\\n" "$first"; cat; else : > empty; fi; }')
    steps.append(f"bgzip -@ {opts.threads} -l {opts.compression_level} -c > {shlex.quote(out.name)}")
    (workdir / "sort_tmp").mkdir(exist_ok=True)
    try:
        run(" | ".join(steps), workdir)
    except ToolError as exc:
        raise PipelineError(f"The {route.format} file cannot be sorted: {exc}") from None
    if (workdir / "empty").exists():
        raise PipelineError(
            f"Refusing to publish an empty {route.format} artifact: the source has zero data lines "
            "after removing headers and comments."
        )
    return out


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem
        shutil.copyfile(source, dest)


def _bigbed_to_bed(source: Path, dest: Path) -> None:
    """bigBed → BED text, streamed chromosome by chromosome (pybigtools)."""
    import pybigtools

    link = dest.with_name("source.bb")  # pybigtools picks the reader by file extension
    if not link.exists():
        link.symlink_to(source.resolve())
    try:
        reader = pybigtools.open(str(link))
        with open(dest, "w") as out:
            for chrom in reader.chroms():
                for start, end, *rest in reader.records(chrom):
                    out.write("\t".join((chrom, str(start), str(end), *rest)) + "\n")
    except (OSError, ValueError, RuntimeError, pybigtools.BBIReadError) as exc:
        raise PipelineError(f"The bigBed file cannot be read: {exc}") from None
