"""The intervals family (VCF, GFF3, GTF, BED, narrowPeak, broadPeak, bigBed): sort and bgzip the
records behind their header, validating coordinates in the same stream, and index with tabix, checking
the index reaches the first record. Pure: imports neither Dagster nor Starlette."""

from __future__ import annotations

import gzip
import io
import re
import shlex
from pathlib import Path

from cfdb_assets.formats import Route
from cfdb_assets.sources import Incoming, PipelineError, ToolOptions, sniff
from cfdb_assets.stream_index import StreamIndex
from cfdb_assets.tools import ToolError, run, scrub

__all__ = ["bigbed_to_bed", "check_reachable", "sorted_intervals", "tabix"]


def tabix(route: Route, args: str, workdir: Path, data: Path | None = None) -> None:
    """``tabix -f args``. A record ending before it starts is the file's fault, not the tool's: a
    permanent refusal that quotes the record (found in ``data`` on this failure path only). Only
    tabix compares start with end: the sort step checks each coordinate's form with grep, a DFA,
    because an awk doing the arithmetic would add ~15 % to every build; the source, and so its line
    numbers, is gone by the index step."""
    try:
        run(f"tabix -f {args}", workdir)
    except ToolError as exc:
        found = re.search(r"end (-?\d+) < begin (-?\d+)", str(exc))
        if not found:
            raise
        end, begin = int(found[1]), int(found[2])
        start = begin - 1 if route.preset == "bed" else begin  # tabix reports a 1-based begin
        record = _reversed_record(data, route.preset) if data else None
        quoted = f": {record[:80]!r}" if record else ""
        raise PipelineError(
            f"The {route.format} file has a record whose start ({start}) is after its end ({end}){quoted}; "
            "fix the file or its catalog format."
        ) from None


# Per preset: the (start, end) columns, 0-based, where the file has an end column.
_SPAN = {"bed": (1, 2), "gff": (3, 4)}


def _reversed_record(data: Path, preset: str) -> str | None:
    """The first record of a bgzipped file whose start is after its end (tabs shown as spaces)."""
    if preset not in _SPAN:
        return None  # a VCF's end is computed by tabix (REF, INFO/END): its message says enough
    first, last = _SPAN[preset]
    with gzip.open(data, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(fields) <= last:
                continue
            try:
                if int(fields[first]) > int(fields[last]):
                    return " ".join(fields)
            except ValueError:
                continue
    return None


def check_reachable(route: Route, data: Path, workdir: Path) -> None:
    """The bar alignments meet with their record count: a region query finds data. One tabix call
    on the smallest region that holds a record: around the first record's start (an index that
    holds no contig, or skipped the record, returns nothing)."""
    first = _first_record(data, route.preset)
    if first is None:
        raise PipelineError(f"Refusing to publish an empty {route.format} artifact: it has no records.")
    chrom, start = first
    # 1-based, inclusive: the 0-based [start-1, start+1), which reaches even a zero-length BED record.
    region = f"{{{chrom}}}:{max(start, 0)}-{max(start, 0) + 1}"  # {} lets the name hold ':' or '-'
    if not run(f"tabix {shlex.quote(data.name)} {shlex.quote(region)}", workdir).strip():
        raise PipelineError(
            f"Refusing to publish the {route.format} artifact: its index does not return its first "
            f"record ({chrom}:{start + 1}), so a browser would find no data."
        )


# Per preset: the column of the start and whether it is 1-based.
_START = {"bed": (1, False), "vcf": (1, True), "gff": (3, True)}


def _first_record(data: Path, preset: str) -> tuple[str, int] | None:
    """(chromosome, 0-based start) of the first record a region query can return, if any."""
    column, one_based = _START[preset]
    with gzip.open(data, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                start = int(fields[column]) - one_based
                if preset == "bed" and start == int(fields[2]) == 0:
                    continue  # a zero-length record at 0: htslib returns it for no region at all
            except (IndexError, ValueError):
                return fields[0], -1  # a record tabix cannot place: the query will say so
            return fields[0], start
    return None


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
# What a data line's coordinates must look like (grep -E, literal tabs): plain integers, BED's start
# and end >= 0, VCF's POS >= 0 (0 marks a telomere), GFF's start and end >= 1. Whether start <= end
# is arithmetic, left to tabix (see _tabix).
_COORDINATES = {
    "bed": "^[^\t]+\t[0-9]+\t[0-9]+(\t|$)",
    "vcf": "^[^\t]+\t[0-9]+(\t|$)",
    "gff": "^[^\t]+\t[^\t]*\t[^\t]*\t0*[1-9][0-9]*\t0*[1-9][0-9]*(\t|$)",
}
# The same rules, column by column, to say what is wrong with a line the grep stopped at.
_COORDINATE_COLUMNS = {
    "bed": ((2, "start"), (3, "end")),
    "vcf": ((2, "position"),),
    "gff": ((4, "start"), (5, "end")),
}
_DROPPED = {
    "bed": "headers (#, track, browser), comments or blank lines",
    "vcf": "header lines or blank lines",
    "gff": "directives, comments, blank lines or the ##FASTA section",
}
BAD_LINE = "bad_line.txt"  # in the work dir: 'N:line', the first data line with malformed coordinates
VCF_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")


def _coordinate_check(preset: str) -> str:
    """A shell step that reads the source's lines and fails at the first data line whose coordinates
    are malformed, leaving it in BAD_LINE. grep -n counts every line it reads, so that is the line
    number in the source as given (the steps before it drop no line above a data line); grep's DFA
    costs a fifth of an awk's field splitting."""
    pattern = f"{_NOT_DATA[preset]}|{_COORDINATES[preset]}"
    return f"{{ grep -a -n -v -m1 -E '{pattern}' > {BAD_LINE}; [ $? -eq 1 ]; }}"


def _refuse_bad_line(workdir: Path, what: str, preset: str, failure: ToolError) -> None:
    """Raise the refusal for the line _coordinate_check stopped at, if it stopped at one. Not when
    htslib failed to decompress the source: the line it stopped at is then the cut-off last one."""
    if "[E::" in str(failure):
        return
    path = workdir / BAD_LINE
    found = path.read_text(encoding="utf-8", errors="replace").rstrip("\n") if path.exists() else ""
    if not found:
        return
    number, _, line = found.partition(":")
    problem = _coordinate_problem(line, preset)
    raise PipelineError(f"Line {number} of the {what} {problem}; fix the file or its catalog format.")


def _coordinate_problem(line: str, preset: str) -> str:
    fields = line.split("\t")
    if not fields[0]:
        return "has an empty first column (the chromosome)"
    least = 1 if preset == "gff" else 0
    for column, name in _COORDINATE_COLUMNS[preset]:
        if len(fields) < column:
            plural = "" if len(fields) == 1 else "s"
            return f"has {len(fields)} tab-separated column{plural}, so no {name} (column {column})"
        value = fields[column - 1]
        if not re.fullmatch(r"-?[0-9]+", value):
            return f"has a non-numeric {name} ({value[:40]!r})"
        if int(value) < 0:
            return f"has a negative {name} ({value})"
        if int(value) < least:
            return f"has {name} {value}, but GFF coordinates start at 1"
    return "has malformed coordinates"


def _leading_header(source: Incoming, gzipped: bool, preset: str) -> tuple[list[tuple[int, str]], int | None]:
    """The header lines before the first data line, with their 1-based line numbers (blank lines
    skipped; stops at ##FASTA), and the number of the first data line (None: there is none).
    Reads the stream only as far as the first data line."""
    raw = source.open()
    binary = gzip.GzipFile(fileobj=raw) if gzipped else raw
    lines = []
    with raw, io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith("##FASTA"):
                break
            if not _HEADER[preset].match(line):
                return lines, number
            # tabix skips only '#' lines: BED's track/browser lines become comments, kept for the record.
            lines.append((number, line if line.startswith("#") else f"#{line}"))
    return lines, None


def _check_vcf_header(header: list[tuple[int, str]], first_record: int) -> None:
    """Refuse a VCF header that the browsers' VCF readers reject. igv.js throws unless the first line
    starts with '##fileformat'; @gmod/vcf (Gosling, JBrowse 2) throws unless the last single-'#'
    header line names the 8 fixed columns, tab-separated. htslib only warns about the first, so
    tabix indexes such a file: it would be published, then fail in one browser or the other."""
    fix = "; fix the file or its catalog format."
    if not header:
        raise PipelineError(
            f"Line {first_record} of the VCF file is a record, but the file has no header: a VCF starts with "
            f"'##fileformat=VCFv4.x' and names its columns in a '#CHROM' line before the records{fix}"
        )
    number, line = header[0]
    if not line.startswith("##fileformat="):
        raise PipelineError(
            f"Line {number} of the VCF file should be its '##fileformat=VCFv4.x' line (igv.js reads no VCF "
            f"without it), not {line[:60]!r}{fix}"
        )
    columns = [(n, ln) for n, ln in header if not ln.startswith("##")]
    if not columns:
        raise PipelineError(
            f"Line {first_record} of the VCF file is a record, but no '#CHROM' line naming the columns "
            f"comes before it{fix}"
        )
    number, line = columns[-1]
    if tuple(line.split("\t")[:8]) != VCF_COLUMNS:
        raise PipelineError(
            f"Line {number} of the VCF file should be the '#CHROM' line, the last header line, naming the "
            f"columns {' '.join(VCF_COLUMNS)} separated by tabs; it is {line[:60]!r}{fix}"
        )


def _line_count(path: Path, gzipped: bool) -> int:
    """Lines in a (decompressed) file; a last line without a newline counts. Error path only."""
    opener = gzip.open if gzipped else open
    count, last = 0, b"\n"
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def sorted_intervals(route: Route, source: Path | Incoming, gzipped: bool, workdir: Path, opts: ToolOptions) -> Path:
    """The records behind their header, sorted and bgzipped, into ``workdir``. The source is read as
    it arrives, and first without a sort: most catalog files are sorted already, and when the
    check beside that pass (``sort -C``, the sort's own order) passes, the sort's output would be
    those very bytes. At the first record out of order that pass stops and the sort runs, reading
    the spool from its start."""
    source = Incoming.of(source)
    out = workdir / route.data_name
    given, given_gzipped = source, gzipped  # line numbers refer to the file as the catalog gave it
    what = f"{route.format} file"
    if route.format == "bigBed":
        bed = workdir / "source.bed"
        bigbed_to_bed(source.complete(), bed)
        source, gzipped, what = Incoming(bed), False, "BED made from the bigBed file"
    if route.format == "GTF":
        _gtf_to_gff3(source, gzipped, workdir, opts)
        source, gzipped, what = Incoming(workdir / "source.gff3"), False, "GFF3 converted from the GTF file"
    header, first_record = _leading_header(source, gzipped, route.preset)
    if route.format == "VCF" and first_record is not None:
        _check_vcf_header(header, first_record)
    (workdir / "header.txt").write_text("".join(f"{line}\n" for _, line in header), encoding="utf-8")
    (workdir / "sort_tmp").mkdir(exist_ok=True)
    carriage_returns = b"\r" in sniff(source)[1]
    try:
        if not _passed_sorted(route, source, gzipped, carriage_returns, workdir, opts):
            _clear(workdir, out)
            given, stdin = source.tool_input()
            with _stream_index(route, workdir) as index:
                run(_body_pipeline(route, given, gzipped, carriage_returns, opts, sort=True, index_fd=index.fd),
                    workdir, stdin=stdin, pass_fds=index.pass_fds)
                index.succeeded()
    except ToolError as exc:
        if exc.resource_exhausted:
            raise  # transient: the attempt is retried
        _refuse_bad_line(workdir, what, route.preset, exc)
        detail = str(exc).replace("{ failed", "the pipeline failed", 1)  # the command starts with '{'
        raise PipelineError(f"The {route.format} file cannot be sorted: {detail}") from None
    if not _has_records(out):
        lines = _line_count(given.complete(), given_gzipped) if route.format != "bigBed" else 0
        found = "the file has no records"
        if lines:
            found = f"lines 1-{lines} of the {route.format} file hold no record, only {_DROPPED[route.preset]}"
        raise PipelineError(f"Refusing to publish an empty {route.format} artifact: {found}.")
    if _stream_index(route, workdir).path.is_file():
        check_reachable(route, out, workdir)  # what the index step checks of the index it builds
    return out


def _stream_index(route: Route, workdir: Path) -> StreamIndex:
    """The TBI of the artifact, built while the pipeline writes it (``<data>.tbi``, which the build
    stores with the sorted data, so the index step has nothing left to do)."""
    return StreamIndex(route.preset, workdir / f"{route.data_name}.tbi")


SORTED_STATUS = "sorted.status"  # in the work dir: sort -C's exit status (0: in order, 1: not)


def _passed_sorted(route: Route, source: Incoming, gzipped: bool, carriage_returns: bool, workdir: Path,
                   opts: ToolOptions) -> bool:
    """Run the pass without a sort; whether it produced the artifact. A pass that failed for
    another reason than the order raises (the same failure would stop the sort)."""
    given, stdin = source.tool_input()
    with _stream_index(route, workdir) as index:
        command = _body_pipeline(route, given, gzipped, carriage_returns, opts, sort=False, index_fd=index.fd)
        try:
            run(command, workdir, stdin=stdin, pass_fds=index.pass_fds)
            failure = None
        except ToolError as exc:
            failure = exc
        status = (workdir / SORTED_STATUS).read_text().strip() if (workdir / SORTED_STATUS).exists() else ""
        if status == "1":
            return False
        if failure is not None:
            raise failure
        if status == "0":
            index.succeeded()  # the index of the bytes that pass produced: the artifact's
        return status == "0"


def _clear(workdir: Path, out: Path) -> None:
    for path in (out, out.with_name(f"{out.name}.tbi"), workdir / BAD_LINE, workdir / SORTED_STATUS):
        path.unlink(missing_ok=True)


def _body_pipeline(route: Route, given: str, gzipped: bool, carriage_returns: bool, opts: ToolOptions,
                   sort: bool, index_fd: int | None = None) -> str:
    """The shell pipeline from the source (the file ``given``, or ``-``: stdin) to the bgzipped artifact. The body is everything
    but header, comment and blank lines (grep is far cheaper than awk here: this pass sees every
    byte); CR line endings are stripped only when the file has them. With ``sort``, GNU sort
    orders it; without, ``sort -C`` checks beside the pass that it is already in that order, and
    its stopping at the first record out of order stops the pass (tee's copy breaks). With
    ``index_fd``, a copy of the bgzipped output goes to that descriptor (cfdb_assets.stream_index);
    ``tee -p`` writes on to the artifact if the index reader gives up."""
    from_file = "" if given == "-" else f" {given}"
    steps = []
    if gzipped:
        steps.append(f"bgzip -dc -@ {opts.threads}{from_file}")
    if carriage_returns:
        steps.append("tr -d '\\r'")
    if route.preset == "gff":
        steps.append("sed '/^##FASTA/,$d'")  # the FASTA section is not features
    steps.append("tee /dev/fd/3")  # a copy of every line for the coordinate check, below
    if not gzipped and from_file:
        steps[0] += f" <{from_file}"  # the first step reads the file itself: no cat, one pipe less
    steps.append(f"{{ grep -Ev '{_NOT_DATA[route.preset]}' || [ $? -eq 1 ]; }}")
    keys = f"-t \"$(printf '\\t')\" {_INTERVAL_SORT[route.preset]}"
    if sort:
        steps.append(f"sort {keys} -S {opts.sort_buffer} --parallel={opts.threads} -T sort_tmp")
    else:
        steps.append("tee /dev/fd/4")
    # The header first, then the body; a body without a record is refused afterwards (_has_records).
    into = f"> {shlex.quote(route.data_name)}"
    if index_fd is not None:
        into = f"| tee -p {shlex.quote(route.data_name)} >&{index_fd}"
    body = f"{{ cat header.txt; {' | '.join(steps)}; }} | bgzip -@ {opts.threads} -l {opts.compression_level} -c {into}"
    if not sort:
        body = f"{{ {body}; }} 4>&1 >/dev/null | {{ sort -C {keys}; echo $? > {SORTED_STATUS}; }}"
    # The coordinate check runs beside the pass, on fd 3; when it stops at a bad line, tee's copy
    # breaks and the whole pipeline fails.
    return f"{{ {body}; }} 3>&1 >/dev/null | {_coordinate_check(route.preset)}"


def _has_records(data: Path) -> bool:
    """Whether the bgzipped artifact holds a record after its header (every header line starts with #)."""
    with gzip.open(data, "rb") as fh:
        return any(not line.startswith(b"#") for line in fh)


def _gtf_to_gff3(source: Incoming, gzipped: bool, workdir: Path, opts: ToolOptions) -> None:
    """GTF → workdir/source.gff3 (Gosling parses GFF3 only; gffread keeps genes, comments and
    attributes). The GTF's coordinates are checked first, as it is copied, with its own line
    numbers; gffread would drop a feature with a bad start and swap a start after its end, saying
    so only on stderr, which is read here."""
    decompress = f"bgzip -dc -@ {opts.threads}" if gzipped else "cat"
    try:
        run(f"{decompress} | tee source.gtf | {_coordinate_check('gff')}", workdir, stdin=source.open())
    except ToolError as exc:
        _refuse_bad_line(workdir, "GTF file", "gff", exc)
        raise PipelineError(f"The GTF file cannot be read: {exc}") from None
    try:
        run("gffread --keep-genes --keep-comments -F -o source.gff3 source.gtf 2> gffread.log", workdir)
    except ToolError as exc:
        tail = scrub((workdir / "gffread.log").read_text(errors="replace").strip()[-400:])
        raise PipelineError(f"The GTF file cannot be converted to GFF3: {exc} {tail}".strip()) from None
    log = (workdir / "gffread.log").read_text(errors="replace")
    swapped = re.search(r"invalid feature coordinates.*\n(.*)", log)
    if swapped:
        line = swapped[1].rstrip("\r")
        with open(workdir / "source.gtf", encoding="utf-8", errors="replace", newline="") as fh:
            number = next((n for n, raw in enumerate(fh, start=1) if raw.rstrip("\r\n") == line), "?")
        fields = line.split("\t") + [""] * 5
        raise PipelineError(
            f"Line {number} of the GTF file has its start ({fields[3]}) after its end ({fields[4]}); "
            "fix the file or its catalog format."
        )


def bigbed_to_bed(source: Path, dest: Path) -> None:
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
