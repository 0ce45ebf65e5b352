"""The tool pipelines: source file → sorted, block-compressed data (+ index where the sort can write
it in the same pass) → index.

This module routes a source to its family and holds the alignments family (samtools); the intervals
family is ``cfdb_assets.intervals``, what a source file is ``cfdb_assets.sources``. Each step is a
shell pipeline run by ``cfdb_assets.tools.run``. Pure: imports neither Dagster nor Starlette.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cfdb_assets.formats import ALIGNMENTS, INTERVALS, Route
from cfdb_assets.intervals import check_reachable, sorted_intervals, tabix
from cfdb_assets.sources import Incoming, PipelineError, ToolOptions, binary_kind, link_or_copy, sniff, sniff_head
from cfdb_assets.tools import ToolError, run

__all__ = [
    "BAI_MAX",
    "Incoming",
    "PipelineError",
    "ToolOptions",
    "build_index",
    "build_sorted",
    "index_kind_of",
    "sniff",
]

BAI_MAX = 2**29 - 1  # BAI/TBI cannot index coordinates beyond this; CSI can
INDEX_KINDS = ("bai", "tbi", "csi")
def _check_content(route: Route, source: Incoming) -> bool:
    """Refuse bytes that are not what the route expects; returns whether the source is gzip."""
    raw = source.head()
    if route.format == "bigBed":
        if raw[:4] != b"\xeb\xf2\x89\x87":
            found = binary_kind(raw[:4]) or "text"
            raise PipelineError(f"The file is labelled bigBed but its bytes are {found}, not bigBed.")
        return False
    gzipped, head = sniff_head(raw)
    found = binary_kind(head)
    if route.family == ALIGNMENTS and found == "BAM":
        return gzipped  # SAM and BAM are both read by samtools, whatever the label says
    if found:
        raise PipelineError(
            f"The file is labelled {route.format} but its bytes are {found}; "
            f"it cannot be processed as {route.format}. Check the catalog's file_format."
        )
    return gzipped


def build_sorted(route: Route, source: Path | Incoming, workdir: Path, opts: ToolOptions) -> Path:
    """Turn a source into the sorted, block-compressed data artifact (in ``workdir``). The source
    may still be arriving (an ``Incoming`` spool): the tools read it as it comes.

    For alignments the index is written in the same pass, next to the data (``<data>.bai|.csi``);
    ``index_kind_of`` finds it."""
    source = Incoming.of(source)
    gzipped = _check_content(route, source)
    if route.family == ALIGNMENTS:
        return _sorted_alignments(route, source, workdir, opts)
    if route.family == INTERVALS:
        return sorted_intervals(route, source, gzipped, workdir, opts)
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
        kind = "csi" if _max_reference_length(link, workdir)[0] > BAI_MAX else "bai"
        run(f"samtools index {'-c' if kind == 'csi' else '-b'} -@ {opts.threads} -o {q}.{kind} {q}", workdir)
        return workdir / f"{link.name}.{kind}", kind
    try:
        tabix(route, f"-p {route.preset} {q}", workdir, link)
        kind = "tbi"
    except ToolError as exc:
        if "csi index" not in str(exc).lower():
            raise
        # A coordinate beyond 2^29-1: only CSI can hold it.
        tabix(route, f"-C -p {route.preset} {q}", workdir, link)
        kind = "csi"
    check_reachable(route, link, workdir)
    return workdir / f"{link.name}.{kind}", kind


def _max_reference_length(alignments: Path | Incoming, workdir: Path) -> tuple[int, bool]:
    """The longest reference in the header, and whether the header says SO:coordinate (read from
    the stream: the header comes first)."""
    source = Incoming.of(alignments)
    try:
        header = run("samtools view -H -", workdir, stdin=source.open())
    except ToolError as exc:
        raise PipelineError(f"The alignment file's header cannot be read: {exc}") from None
    lengths = [int(m) for m in re.findall(r"^@SQ\t.*?\bLN:(\d+)", header, flags=re.MULTILINE)]
    return max(lengths, default=0), re.search(r"^@HD\t.*\bSO:coordinate\b", header, flags=re.MULTILINE) is not None


def _sorted_alignments(route: Route, source: Incoming, workdir: Path, opts: ToolOptions) -> Path:
    """The sorted BAM and its index, in one pass. A BAM whose header says it is coordinate-sorted
    waits for its last byte and tries the index-only path first; any other source is sorted as it
    arrives, while a BAM is still checked, once complete, for being sorted all the same (the
    header's SO tag is not trusted either way): the artifact is the same whichever path wins."""
    out = workdir / "sorted.bam"
    is_bam = sniff(source)[1].startswith(b"BAM\x01")
    longest, says_sorted = _max_reference_length(source, workdir)
    kind = "csi" if longest > BAI_MAX else "bai"
    index = workdir / f"sorted.bam.{kind}"
    if is_bam and says_sorted:
        path = source.complete()
        _quickcheck(path, workdir)
        if _already_sorted(path, index, kind, workdir, opts):
            _take(source, out)
        else:
            index.unlink(missing_ok=True)
            _sort(route, Incoming(path), out, index, workdir, opts)
    else:
        _sort_unless_sorted(route, source, is_bam, out, index, kind, workdir, opts)
    if _record_count(out, index) == 0:
        raise PipelineError(f"Refusing to publish an empty {route.format} artifact: the file has no records.")
    return out


def _sort_unless_sorted(route: Route, source: Incoming, is_bam: bool, out: Path, index: Path, kind: str,
                        workdir: Path, opts: ToolOptions) -> None:
    """Sort while the source arrives; once it is complete, a BAM that indexes as sorted cancels the
    sort and becomes the artifact as it is (as when its header said so)."""
    cancel = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="sort") as pool:
        sorting = pool.submit(_sort, route, source, out, index, workdir, opts, cancel)
        try:
            path = source.complete()
            if is_bam:
                _quickcheck(path, workdir)
                checked = workdir / f"source.{kind}"
                if _already_sorted(path, checked, kind, workdir, opts):
                    cancel.set()
                    _wait_quietly(sorting)
                    out.unlink(missing_ok=True)
                    _take(source, out)
                    checked.replace(index)
                    return
            sorting.result()
        except BaseException:
            cancel.set()
            _wait_quietly(sorting)
            raise


def _take(source: Incoming, out: Path) -> None:
    """The source itself becomes the artifact: linked when it is our copy, copied when it is someone
    else's file (a file:// source: a link would let its owner change a published artifact)."""
    if source.shared:
        shutil.copyfile(source.path, out)
    else:
        link_or_copy(source.path, out)


def _wait_quietly(future) -> None:
    with contextlib.suppress(Exception):  # cancelled: its output is not used
        future.result()


def _quickcheck(path: Path, workdir: Path) -> None:
    # A BAM cut short lacks its EOF block; threaded readers may then exit 0 on partial data.
    try:
        run(f"samtools quickcheck {shlex.quote(str(path))}", workdir)
    except ToolError:
        raise PipelineError("The BAM file is truncated or damaged (samtools quickcheck failed).") from None


def _sort(route: Route, source: Incoming, out: Path, index: Path, workdir: Path, opts: ToolOptions,
          cancel: threading.Event | None = None) -> None:
    (workdir / "sort_tmp").mkdir(exist_ok=True)
    try:
        # --write-index builds the index in the sort's output pass: no second read of the data.
        # --no-PG: no @PG line with our work path, so a rebuild gives the same bytes.
        given, stdin = source.tool_input()
        run(
            f"samtools sort -@ {opts.threads} -m {opts.sort_memory} -l {opts.compression_level} "
            f"-T sort_tmp/part --no-PG --write-index -o {out.name}##idx##{index.name} {given}",
            workdir, stdin=stdin, cancel=cancel,
        )
    except ToolError as exc:
        if exc.resource_exhausted or (cancel and cancel.is_set()):
            raise  # transient: the attempt is retried
        raise PipelineError(f"The {route.format} file cannot be sorted: {exc}") from None


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
