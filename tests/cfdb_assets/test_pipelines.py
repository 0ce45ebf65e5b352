"""The tool pipelines, end to end with the real tools: source → build_sorted → build_index.

Every built artifact is checked against a brute-force scan of its source: the same records (nothing
lost, nothing invented), sorted, block-compressed, and an index that answers random region queries
(through pysam, with the returned index path) exactly like a full scan. Sources come from the seeded
generators in synthetic/small.py. Each (format, variant) is built once per module and its
result (or its error) shared by the tests that inspect it.
"""

from __future__ import annotations

import collections
import gzip
import itertools
import multiprocessing
import os
import random
import re
import signal
import subprocess
import traceback
from pathlib import Path

import pysam
import pytest

from cfdb_assets.formats import INTERVALS, route_for
from cfdb_assets.pipelines import BAI_MAX, PipelineError, ToolOptions, build_index, build_sorted
from synthetic import small as gf

OPTS = ToolOptions(threads=2, sort_memory="128M", compression_level=6)
N_QUERIES = 24
INDEX_MAGIC = {"bai": b"BAI\x01", "tbi": b"TBI\x01", "csi": b"CSI\x01"}
STEP_DEADLINE = 60  # seconds; every step here takes well under one (slack for a loaded CI machine)


# --- building ------------------------------------------------------------------------------------


def _in_child(conn, fn, args):
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        if not isinstance(exc, PipelineError):
            exc.add_note("".join(traceback.format_exception(exc)))
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an unpicklable error
            conn.send(("error", RuntimeError(repr(exc))))


def _processes_in(workdir: Path) -> list[int]:
    """Processes whose working directory is inside ``workdir`` (the pipeline's tools)."""
    root = str(workdir.resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + "/"):
                pids.append(int(entry))
    return pids


def _step(fn, *args, workdir: Path):
    """``fn(*args)`` in a forked child, so that a hung tool fails the test instead of the suite:
    past STEP_DEADLINE the child and the tools running in ``workdir`` are killed by pid."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_child, args=(child, fn, args))
    proc.start()
    child.close()
    if not parent.poll(STEP_DEADLINE):
        stuck = []
        for pid in _processes_in(workdir):
            try:
                stuck.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip())
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.kill()
        proc.join()
        pytest.fail(f"{fn.__name__} did not finish within {STEP_DEADLINE} s; killed: {stuck}")
    status, value = parent.recv()
    proc.join()
    if status == "error":
        raise value
    return value


def _build(route, source: Path, base: Path, opts: ToolOptions = OPTS) -> tuple[Path, Path, str]:
    workdir = base / "work"
    workdir.mkdir()
    data = _step(build_sorted, route, source, workdir, opts, workdir=workdir)
    streamed = data.with_name(f"{data.name}.tbi")  # written during the sort (cfdb_assets.stream_index)
    in_pass = streamed.read_bytes() if route.family == INTERVALS and streamed.is_file() else None
    index, kind = _step(build_index, route, data, workdir, opts, workdir=workdir)
    if route.family == INTERVALS:
        # The same bytes as tabix's own index, or none where only a CSI can hold the coordinates.
        assert in_pass == (index.read_bytes() if kind == "tbi" else None), "the in-pass TBI differs from tabix's"
    assert data.is_file(), f"build_sorted returned {data}, which does not exist"
    assert index.is_file(), f"build_index returned {index}, which does not exist"
    assert index.parent.resolve() == workdir.resolve(), "the index must be written inside workdir"
    assert workdir.resolve() in data.resolve().parents or data.parent.resolve() == workdir.resolve()
    return data, index, kind


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """build(key, route, make_source) → (source, data, index, kind); one build per key per module.
    A build that raised re-raises the same error in every test that asks for it."""
    cache: dict[str, tuple[str, object]] = {}

    def build(key: str, route, make_source):
        if key not in cache:
            base = tmp_path_factory.mktemp(re.sub(r"\W+", "_", key)[:40])
            source = make_source(base / "src" / "source.dat")
            try:
                cache[key] = ("ok", (source, *_build(route, source, base)))
            except Exception as exc:  # noqa: BLE001 - stored and re-raised in each test
                cache[key] = ("error", exc)
        status, value = cache[key]
        if status == "error":
            raise value
        return value

    return build


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _refusal(tmp_path: Path, route, data: bytes, opts: ToolOptions = OPTS) -> PipelineError:
    source = _write(tmp_path / "src" / "source.dat", data)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(PipelineError) as info:
        _step(build_sorted, route, source, workdir, opts, workdir=workdir)
    return info.value


def _assert_index(index: Path, kind: str, expected: str) -> None:
    assert kind == expected, f"index kind {kind!r}, expected {expected!r}"
    raw = index.read_bytes()
    magic = gzip.decompress(raw)[:4] if raw[:2] == b"\x1f\x8b" else raw[:4]
    assert magic == INDEX_MAGIC[expected], f"{index.name} starts with {magic!r}, not a {expected} index"


def _assert_bgzf(path: Path) -> None:
    raw = path.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[12:14] == b"BC", f"{path.name} is not BGZF (bgzip) data"
    assert raw.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")), \
        f"{path.name} lacks the BGZF end-of-file block"


# --- intervals: the formats and their brute-force model ------------------------------------------


def _bed_header(line: str) -> bool:
    return line.startswith("#") or re.match(r"(track|browser)(\s|$)", line) is not None


def _vcf_interval(f):
    return f[0], int(f[1]) - 1, int(f[1]) - 1 + len(f[3])


def _gff_interval(f):
    return f[0], int(f[3]) - 1, int(f[4])


def _bed_interval(f):
    return f[0], int(f[1]), int(f[2])


# name → (EDAM id, name, text(seed, giant), is_header(line), interval(fields), expected index kind)
FORMATS = {
    "VCF": ("format:3016", "VCF", lambda s, g: gf.vcf_text(s, giant=g), lambda ln: ln.startswith("#"), _vcf_interval),
    "GFF3": ("format:1975", "GFF3", lambda s, g: gf.gff3_text(s, giant=g), lambda ln: ln.startswith("#"), _gff_interval),
    "BED": ("format:3003", "BED", lambda s, g: gf.bed_text(s, giant=g), _bed_header, _bed_interval),
    "narrowPeak": ("format:3613", "narrowPeak", lambda s, g: gf.bed_text(s, kind="narrowPeak", giant=g), _bed_header, _bed_interval),
    "broadPeak": ("format:3614", "broadPeak", lambda s, g: gf.bed_text(s, kind="broadPeak", giant=g), _bed_header, _bed_interval),
}
SEEDS = {"VCF": 101, "GFF3": 202, "BED": 303, "narrowPeak": 404, "broadPeak": 505, "GTF": 606, "bigBed": 707}

# (encoding, line variant, giant contig)
VARIANTS = [
    ("plain", "lf", False),
    ("gzip", "lf", False),
    ("bgzip", "lf", False),
    ("plain", "crlf", False),
    ("plain", "no_final_newline", False),
    ("plain", "trailing_empty_line", False),
    ("gzip", "crlf", False),
    ("bgzip", "no_final_newline", False),
    ("plain", "lf", True),
    ("bgzip", "crlf", True),
]
INTERVAL_CASES = [
    pytest.param(fmt, enc, var, giant, id=f"{fmt}-{enc}-{var}{'-giant' if giant else ''}")
    for fmt in FORMATS
    for enc, var, giant in VARIANTS
]


def _source_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _source_model(fmt: str, text: str) -> tuple[list[str], list[str]]:
    """(header lines, data lines) of a source, by a plain scan."""
    _, _, _, is_header, _ = FORMATS[fmt]
    header, data = [], []
    for line in _source_lines(text):
        if fmt == "GFF3" and line.startswith("##FASTA"):
            break
        if line == "":
            continue
        (header if is_header(line) else data).append(line)
    return header, data


def _output_lines(data: Path) -> list[str]:
    _assert_bgzf(data)
    text = gzip.decompress(data.read_bytes()).decode()
    assert "\r" not in text, "a carriage return survived into the output"
    assert text.endswith("\n"), "the output does not end with a newline"
    return text[:-1].split("\n")


def _split_output(lines: list[str], is_header) -> tuple[list[str], list[str]]:
    """Header block at the top, then the body; header-like or empty lines in the body are errors."""
    k = 0
    while k < len(lines) and is_header(lines[k]):
        k += 1
    header, body = lines[:k], lines[k:]
    stray = [ln for ln in body if ln == "" or is_header(ln)]
    assert not stray, f"{len(stray)} header/comment/empty line(s) inside the data body, e.g. {stray[:3]}"
    return header, body


def _assert_sorted(body: list[str], interval) -> None:
    keys = [(f[0].encode(), f[1]) for f in (interval(ln.split("\t")) for ln in body)]
    for k, (a, b) in enumerate(itertools.pairwise(keys)):
        assert a <= b, f"data line {k + 2} is out of (chrom bytes, start) order: {a} then {b}"


def _regions(rng: random.Random, intervals: list[tuple[str, int, int]], n: int = N_QUERIES):
    """Whole contigs, plus n regions: most near a random record, some anywhere on the contig."""
    by_chrom = collections.defaultdict(list)
    for chrom, beg, end in intervals:
        by_chrom[chrom].append((beg, end))
    chroms = sorted(by_chrom)
    regions = [(c, None, None) for c in chroms]
    for _ in range(n):
        chrom = rng.choice(chroms)
        ivs = by_chrom[chrom]
        if rng.random() < 0.75:
            beg = max(0, rng.choice(ivs)[0] - rng.randrange(0, 20_000))
        else:
            beg = rng.randrange(0, max(e for _, e in ivs) + 1000)
        regions.append((chrom, beg, beg + rng.choice((1, 10, 1000, 25_000, 400_000))))
    return regions


def _assert_tabix_queries(data: Path, index: Path, lines: list[str], interval, seed: int) -> None:
    """≥N_QUERIES seeded regions through the index (pysam) == a brute-force scan of ``lines``."""
    model = [(interval(ln.split("\t")), ln) for ln in lines]
    regions = _regions(random.Random(seed), [iv for iv, _ in model])
    hits = 0
    with pysam.TabixFile(str(data), index=str(index)) as tbx:
        for chrom, beg, end in regions:
            got = list(tbx.fetch(chrom, beg, end)) if beg is not None else list(tbx.fetch(chrom))
            want = [ln for (c, b, e), ln in model if c == chrom and (beg is None or (b < end and e > beg))]
            assert collections.Counter(got) == collections.Counter(want), (
                f"query {chrom}:{beg}-{end}: index returned {len(got)} lines, a full scan finds {len(want)}; "
                f"missing {list((collections.Counter(want) - collections.Counter(got)).elements())[:2]}, "
                f"extra {list((collections.Counter(got) - collections.Counter(want)).elements())[:2]}"
            )
            hits += len(want) if beg is not None else 0
    assert hits > 0, "the random regions hit nothing: the query check would be vacuous"


def _interval_build(built, fmt, enc, var, giant):
    edam, name, text_of, _, _ = FORMATS[fmt]
    text = text_of(SEEDS[fmt], giant)
    route = route_for(edam, name)
    key = f"{fmt}-{enc}-{var}-{giant}"
    _, data, index, kind = built(key, route, lambda p: gf.write_source(p, text, enc, var))
    return text, data, index, kind


# --- intervals: tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "enc", "var", "giant"), INTERVAL_CASES)
def test_intervals_keep_every_data_line_sorted_bytewise_with_headers_only_on_top(built, fmt, enc, var, giant):
    text, data, _, _ = _interval_build(built, fmt, enc, var, giant)
    _, want = _source_model(fmt, text)

    _, body = _split_output(_output_lines(data), FORMATS[fmt][3])

    assert len(body) == len(want), f"{len(body)} data lines out, {len(want)} in"
    assert collections.Counter(body) == collections.Counter(want), "data lines differ from the source's"
    _assert_sorted(body, FORMATS[fmt][4])


@pytest.mark.parametrize(("fmt", "enc", "var", "giant"), INTERVAL_CASES)
def test_intervals_index_answers_random_region_queries_like_a_full_scan(built, fmt, enc, var, giant):
    text, data, index, kind = _interval_build(built, fmt, enc, var, giant)
    _, want = _source_model(fmt, text)

    _assert_index(index, kind, "csi" if giant else "tbi")
    _assert_tabix_queries(data, index, want, FORMATS[fmt][4], SEEDS[fmt] + 1)


def test_giant_fixtures_really_need_csi():
    # Guards the CSI cases above: their coordinates exceed what BAI/TBI can hold, the others do not.
    for fmt, (_, _, text_of, _, interval) in FORMATS.items():
        _, big = _source_model(fmt, text_of(SEEDS[fmt], True))
        _, small = _source_model(fmt, text_of(SEEDS[fmt], False))
        assert max(interval(ln.split("\t"))[2] for ln in big) > BAI_MAX
        assert max(interval(ln.split("\t"))[2] for ln in small) < BAI_MAX


VCF_CASES = [c for c in INTERVAL_CASES if c.values[0] == "VCF"]
GFF_CASES = [c for c in INTERVAL_CASES if c.values[0] == "GFF3"]
BED_CASES = [c for c in INTERVAL_CASES if c.values[0] in ("BED", "narrowPeak", "broadPeak")]


@pytest.mark.parametrize(("fmt", "enc", "var", "giant"), VCF_CASES)
def test_vcf_header_block_stays_first_in_original_order(built, fmt, enc, var, giant):
    text, data, _, _ = _interval_build(built, fmt, enc, var, giant)
    want_header, _ = _source_model(fmt, text)

    header, _ = _split_output(_output_lines(data), FORMATS[fmt][3])

    assert header == want_header
    assert header[0] == "##fileformat=VCFv4.2" and header[-1].startswith("#CHROM\t")


@pytest.mark.parametrize(("fmt", "enc", "var", "giant"), GFF_CASES)
def test_gff3_directives_come_first_and_the_fasta_section_is_dropped(built, fmt, enc, var, giant):
    text, data, _, _ = _interval_build(built, fmt, enc, var, giant)
    want_header, want = _source_model(fmt, text)

    lines = _output_lines(data)
    header, body = _split_output(lines, FORMATS[fmt][3])

    assert lines[0] == "##gff-version 3", "the GFF3 version directive must be the first line"
    directives = [ln for ln in header if ln.startswith("##") and ln != "###"]
    assert directives == [ln for ln in want_header if ln.startswith("##") and ln != "###"], \
        "the ## directives are not all there, in their original order"
    assert not [ln for ln in lines if ln.startswith(("##FASTA", ">")) or "inside_fasta" in ln], \
        "the ##FASTA section (or part of it) is in the output"
    assert all(len(ln.split("\t")) == 9 for ln in body), "a non-feature line is in the GFF3 body"
    assert len(body) == len(want)


@pytest.mark.parametrize(("fmt", "enc", "var", "giant"), BED_CASES)
def test_bed_track_browser_and_comment_lines_never_reach_the_data_body(built, fmt, enc, var, giant):
    text, data, _, _ = _interval_build(built, fmt, enc, var, giant)

    lines = _output_lines(data)
    first_data = next(k for k, ln in enumerate(lines) if not _bed_header(ln))
    late = [ln for ln in lines[first_data:] if _bed_header(ln) or ln == ""]

    assert late == [], f"track/browser/# lines after the first data line: {late}"
    assert "track" in text and "browser" in text  # the fixture does carry them


def test_intervals_sort_chromosomes_bytewise_not_naturally(built):
    _, data, _, _ = _interval_build(built, "BED", "plain", "lf", False)

    _, body = _split_output(_output_lines(data), _bed_header)
    order = list(dict.fromkeys(ln.split("\t", 1)[0] for ln in body))

    assert order == ["chr1", "chr10", "chr2", "chrUn_KI270742v1", "chrX"]


# --- GTF → GFF3 ---------------------------------------------------------------------------------

GTF_VARIANTS = [("plain", "lf"), ("gzip", "lf"), ("bgzip", "lf"), ("plain", "crlf"), ("plain", "no_final_newline"),
                ("bgzip", "trailing_empty_line")]
GTF_CASES = [pytest.param(enc, var, id=f"GTF-{enc}-{var}") for enc, var in GTF_VARIANTS]


def _gtf_model(text: str):
    """GTF exons as (seqid, start, end, strand, transcript_id) and the transcript ids."""
    exons, transcripts = [], set()
    for line in _source_lines(text):
        if not line or line.startswith("#"):
            continue
        f = line.split("\t")
        attrs = dict(re.findall(r'(\S+) "([^"]*)"', f[8]))
        if f[2] == "exon":
            exons.append((f[0], int(f[3]), int(f[4]), f[6], attrs["transcript_id"]))
        if f[2] == "transcript":
            transcripts.add(attrs["transcript_id"])
    return exons, transcripts


def _gff3_attrs(col9: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in col9.split(";") if kv)


def _gtf_build(built, enc, var):
    text = gf.gtf_text(SEEDS["GTF"])
    route = route_for("format:2306", "GTF")
    _, data, index, kind = built(f"GTF-{enc}-{var}", route, lambda p: gf.write_source(p, text, enc, var))
    return text, data, index, kind


@pytest.mark.parametrize(("enc", "var"), GTF_CASES)
def test_gtf_is_converted_to_gff3_feature_lines(built, enc, var):
    _, data, _, _ = _gtf_build(built, enc, var)

    _, body = _split_output(_output_lines(data), lambda ln: ln.startswith("#"))

    assert body
    for line in body:
        f = line.split("\t")
        assert len(f) == 9, f"not 9 columns: {line!r}"
        assert '"' not in f[8] and all("=" in kv for kv in f[8].split(";") if kv), f"not GFF3 attributes: {f[8]!r}"


@pytest.mark.parametrize(("enc", "var"), GTF_CASES)
def test_gtf_transcripts_and_exons_survive_conversion_sorted(built, enc, var):
    text, data, _, _ = _gtf_build(built, enc, var)
    want_exons, want_transcripts = _gtf_model(text)

    _, body = _split_output(_output_lines(data), lambda ln: ln.startswith("#"))
    rows = [ln.split("\t") for ln in body]
    exons = [(f[0], int(f[3]), int(f[4]), f[6], _gff3_attrs(f[8]).get("Parent")) for f in rows if f[2] == "exon"]
    transcripts = {_gff3_attrs(f[8]).get("ID") for f in rows if f[2] in ("transcript", "mRNA")}

    assert collections.Counter(exons) == collections.Counter(want_exons)
    assert transcripts == want_transcripts
    _assert_sorted(body, _gff_interval)


@pytest.mark.parametrize(("enc", "var"), GTF_CASES)
def test_gtf_index_answers_random_region_queries_like_a_full_scan(built, enc, var):
    text, data, index, kind = _gtf_build(built, enc, var)
    want_exons, _ = _gtf_model(text)
    _assert_index(index, kind, "tbi")

    _, body = _split_output(_output_lines(data), lambda ln: ln.startswith("#"))
    # The index against the artifact's own lines...
    _assert_tabix_queries(data, index, body, _gff_interval, SEEDS["GTF"] + 1)
    # ...and the exons it returns against the GTF source.
    rng = random.Random(SEEDS["GTF"] + 2)
    with pysam.TabixFile(str(data), index=str(index)) as tbx:
        for chrom, beg, end in _regions(rng, [(c, s - 1, e) for c, s, e, _, _ in want_exons]):
            got = [ln.split("\t") for ln in (tbx.fetch(chrom, beg, end) if beg is not None else tbx.fetch(chrom))]
            got_exons = [(f[0], int(f[3]), int(f[4]), f[6], _gff3_attrs(f[8]).get("Parent")) for f in got if f[2] == "exon"]
            want = [x for x in want_exons if x[0] == chrom and (beg is None or (x[1] - 1 < end and x[2] > beg))]
            assert collections.Counter(got_exons) == collections.Counter(want), f"query {chrom}:{beg}-{end}"


# --- bigBed → BED -------------------------------------------------------------------------------


def test_bigbed_routes_to_the_intervals_family_as_bed_gz():
    route = route_for("format:3004", None)

    assert route.family == INTERVALS
    assert route.data_name == "data.bed.gz"
    assert route_for(None, "bigBed") == route


def _bigbed_build(built):
    entries_holder = {}

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries_holder["entries"] = gf.write_bigbed(path, SEEDS["bigBed"])
        return path

    _, data, index, kind = built("bigBed", route_for("format:3004", "bigBed"), make)
    _, entries = gf.bigbed_entries(SEEDS["bigBed"])
    return [f"{c}\t{s}\t{e}\t{rest}" for c, s, e, rest in entries], data, index, kind


def test_bigbed_fixture_is_a_real_bigbed(tmp_path):
    import pybigtools

    entries = gf.write_bigbed(tmp_path / "x.bb", SEEDS["bigBed"])
    assert (tmp_path / "x.bb").read_bytes()[:4] == bytes.fromhex("ebf28987")
    with pybigtools.open(str(tmp_path / "x.bb")) as bb:
        assert sum(1 for c in gf.CHROMS for _ in bb.records(c)) == len(entries)


def test_bigbed_becomes_sorted_bgzip_bed_with_every_entry(built):
    want, data, _, _ = _bigbed_build(built)

    _, body = _split_output(_output_lines(data), _bed_header)

    assert collections.Counter(body) == collections.Counter(want)
    _assert_sorted(body, _bed_interval)


def test_bigbed_index_answers_random_region_queries_like_a_full_scan(built):
    want, data, index, kind = _bigbed_build(built)

    _assert_index(index, kind, "tbi")
    _assert_tabix_queries(data, index, want, _bed_interval, SEEDS["bigBed"] + 1)


# --- alignments ---------------------------------------------------------------------------------

# id → (route name, SAM text, source encoding: plain/gzip/bgzip (SAM) or bam, expected index kind)
ALIGN_SEED = 808
ALIGN_CASES = {
    "sam-plain": ("SAM", dict(), "plain", "bai"),
    "sam-gzip": ("SAM", dict(), "gzip", "bai"),
    "sam-bgzip": ("SAM", dict(), "bgzip", "bai"),
    "sam-giant-contig": ("SAM", dict(giant=True), "plain", "csi"),
    "bam-unsorted": ("BAM", dict(), "bam", "bai"),
    "bam-coordinate-sorted": ("BAM", dict(order="coordinate"), "bam", "bai"),
    "bam-coordinate-sorted-giant-contig": ("BAM", dict(order="coordinate", giant=True), "bam", "csi"),
    "bam-unsorted-giant-contig": ("BAM", dict(giant=True), "bam", "csi"),
    "bam-header-lies-records-shuffled": ("BAM", dict(so="coordinate"), "bam", "bai"),
    "bam-header-lies-contigs-in-name-order": ("BAM", dict(order="contig_by_name", so="coordinate"), "bam", "bai"),
    "bam-header-lies-unmapped-in-the-middle": ("BAM", dict(order="unmapped_interleaved", so="coordinate"), "bam", "bai"),
}
ALIGN_IDS = list(ALIGN_CASES)


def _sam_of(case: str) -> str:
    return gf.sam_text(ALIGN_SEED, **ALIGN_CASES[case][1])


def _align_build(built, case: str):
    name, _, enc, expected = ALIGN_CASES[case]
    sam = _sam_of(case)

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if enc == "bam":
            return gf.write_bam(sam, path)
        return gf.write_source(path, sam, enc)

    source, data, index, kind = built(f"align-{case}", route_for(None, name), make)
    return sam, source, data, index, kind, expected


_REF_OPS = re.compile(r"(\d+)([MDN=X])")


def _sam_model(sam: str):
    """Records as (qname, flag, rname, 0-based pos, cigar) with their [beg, end) on the reference."""
    out = []
    for line in _source_lines(sam):
        if line.startswith("@"):
            continue
        f = line.split("\t")
        flag, pos = int(f[1]), int(f[3]) - 1
        rname = None if f[2] == "*" else f[2]
        reflen = sum(int(n) for n, _ in _REF_OPS.findall(f[5])) if not flag & 4 and f[5] != "*" else 1
        out.append(((f[0], flag, rname, pos, None if f[5] == "*" else f[5]), pos, pos + reflen))
    return out


def _rec(r: pysam.AlignedSegment):
    return r.query_name, r.flag, r.reference_name, r.reference_start, r.cigarstring


def _sq(header_text: str) -> list[str]:
    return re.findall(r"^@SQ\t.*$", header_text, flags=re.MULTILINE)


@pytest.mark.parametrize("case", ALIGN_IDS)
def test_alignments_keep_every_record_and_come_out_coordinate_sorted(built, case):
    sam, _, data, _, _, _ = _align_build(built, case)
    model = _sam_model(sam)

    with pysam.AlignmentFile(str(data), "rb", check_sq=False) as bam:
        header = str(bam.header)
        records = list(bam.fetch(until_eof=True))

    assert data.read_bytes()[:4] == b"\x1f\x8b\x08\x04", "the artifact is not a BGZF BAM"
    assert len(records) == len(model), f"{len(records)} records out, {len(model)} in"
    assert collections.Counter(_rec(r) for r in records) == collections.Counter(m for m, _, _ in model)
    assert re.search(r"^@HD\t.*\bSO:coordinate\b", header, flags=re.MULTILINE), "header does not say SO:coordinate"
    assert _sq(header) == _sq(sam), "the @SQ lines changed"
    keys = [(r.reference_id if r.reference_id >= 0 else 1 << 31, r.reference_start) for r in records]
    bad = next((k for k in range(1, len(keys)) if keys[k] < keys[k - 1]), None)
    assert bad is None, f"record {bad} ({records[bad].query_name}) is out of coordinate order: {keys[bad - 1]} then {keys[bad]}"


@pytest.mark.parametrize("case", ALIGN_IDS)
def test_alignments_index_answers_random_region_queries_like_a_full_scan(built, case):
    sam, _, data, index, kind, expected = _align_build(built, case)
    model = _sam_model(sam)
    _assert_index(index, kind, expected)

    placed = [(m[2], b, e) for m, b, e in model if m[2] is not None]
    hits = 0
    with pysam.AlignmentFile(str(data), "rb", index_filename=str(index)) as bam:
        assert bam.mapped == sum(1 for m, _, _ in model if not m[1] & 4)
        assert bam.unmapped == sum(1 for m, _, _ in model if m[1] & 4)
        for chrom, beg, end in _regions(random.Random(ALIGN_SEED + 1), placed):
            got = [_rec(r) for r in (bam.fetch(chrom, beg, end) if beg is not None else bam.fetch(chrom))]
            want = [m for m, b, e in model if m[2] == chrom and (beg is None or (b < end and e > beg))]
            assert collections.Counter(got) == collections.Counter(want), (
                f"query {chrom}:{beg}-{end}: index returned {len(got)} reads, a full scan finds {len(want)}"
            )
            hits += len(want) if beg is not None else 0
    assert hits > 0


@pytest.mark.parametrize("case", ["bam-coordinate-sorted", "bam-coordinate-sorted-giant-contig"])
def test_coordinate_sorted_bam_is_indexed_as_is_not_resorted(built, case):
    _, source, data, _, _, _ = _align_build(built, case)

    def records(path: Path) -> list[str]:
        return subprocess.run(["samtools", "view", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()

    # At equal positions the fixture puts reverse-strand reads first; samtools sort would swap them.
    assert records(data) == records(source)


def test_sorted_bam_fixture_differs_from_a_samtools_resort(tmp_path):
    # Guards the test above: a re-sort of the fixture is observable.
    bam = gf.write_bam(_sam_of("bam-coordinate-sorted"), tmp_path / "in.bam")
    subprocess.run(["samtools", "sort", "-o", str(tmp_path / "re.bam"), str(bam)], check=True, capture_output=True)

    def view(p):
        return subprocess.run(["samtools", "view", str(p)], capture_output=True, text=True, check=True).stdout

    assert view(bam) != view(tmp_path / "re.bam")


def test_alignment_fixtures_include_unmapped_reads_and_all_contigs():
    model = _sam_model(_sam_of("sam-plain"))

    assert sum(1 for m, _, _ in model if m[2] is None) >= 20  # no coordinate at all
    assert sum(1 for m, _, _ in model if m[2] is not None and m[1] & 4) >= 20  # unmapped, placed
    assert {m[2] for m, _, _ in model} >= {"chr1", "chr2", "chr10", "chrX"}
    assert max(e for m, _, e in _sam_model(_sam_of("sam-giant-contig"))) > BAI_MAX


# --- refusals -----------------------------------------------------------------------------------

MISLABEL_LABELS = ["BED", "VCF", "GFF3", "GTF", "narrowPeak", "broadPeak", "SAM", "BAM"]


@pytest.mark.parametrize("kind", gf.BINARY_KINDS)
@pytest.mark.parametrize("label", MISLABEL_LABELS)
def test_mislabelled_binary_is_refused_naming_what_it_found(tmp_path, label, kind):
    error = _refusal(tmp_path, route_for(None, label), gf.mislabelled_bytes(kind))

    assert kind in str(error).lower(), f"the refusal does not name {kind!r}: {error}"


@pytest.mark.parametrize("label", ["BED", "VCF"])
def test_bam_bytes_labelled_as_text_intervals_are_refused_as_binary(tmp_path, label):
    bam = gf.write_bam(_sam_of("sam-plain"), tmp_path / "x.bam").read_bytes()

    error = _refusal(tmp_path, route_for(None, label), bam)

    assert "binary" in str(error).lower() or "bam" in str(error).lower(), str(error)


EMPTY_CASES = {
    "vcf-header-only": ("VCF", gf.vcf_text(1, records=False).encode()),
    "vcf-header-only-gzip": ("VCF", gf.encode(gf.vcf_text(1, records=False), "gzip")),
    "bed-track-line-only": ("BED", b'track name="empty"\n'),
    "bed-headers-and-blank-lines-crlf": ("BED", gf.line_variant(gf.bed_text(1, records=False) + "\n\n", "crlf").encode()),
    "narrowpeak-headers-only-bgzip": ("narrowPeak", gf.encode(gf.bed_text(1, kind="narrowPeak", records=False), "bgzip")),
    "gff3-directives-and-fasta-only": ("GFF3", gf.gff3_text(1, records=False).encode()),
    "gtf-comments-only": ("GTF", gf.gtf_text(1, records=False).encode()),
    "empty-file": ("BED", b""),
    "sam-header-only": ("SAM", gf.sam_text(1, records=False).encode()),
}


@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_a_result_with_zero_data_lines_is_refused(tmp_path, case):
    label, data = EMPTY_CASES[case]

    error = _refusal(tmp_path, route_for(None, label), data)

    assert str(error)


@pytest.mark.parametrize("threads", [1, 2], ids=lambda t: f"threads{t}")
@pytest.mark.parametrize(
    ("label", "make"),
    [
        pytest.param("BED", lambda tmp: gf.encode(gf.bed_text(3), "gzip"), id="truncated-gzip-bed"),
        pytest.param("VCF", lambda tmp: gf.encode(gf.vcf_text(3, n=3000), "bgzip"), id="truncated-bgzip-vcf"),
        pytest.param("SAM", lambda tmp: gf.encode(_sam_of("sam-plain"), "gzip"), id="truncated-gzip-sam"),
        pytest.param("BAM", lambda tmp: gf.write_bam(_sam_of("sam-plain"), tmp / "t.bam").read_bytes(), id="truncated-unsorted-bam"),
        pytest.param("BAM", lambda tmp: gf.write_bam(_sam_of("bam-coordinate-sorted"), tmp / "t.bam").read_bytes(), id="truncated-sorted-bam"),
    ],
)
def test_truncated_compressed_input_is_refused(tmp_path, label, make, threads):
    whole = make(tmp_path)
    opts = ToolOptions(threads=threads, sort_memory=OPTS.sort_memory, compression_level=OPTS.compression_level)

    # Several cut points: with threads, htslib's outcome on a truncated stream is a race.
    for k, fraction in enumerate((0.6, 0.35, 0.5, 0.7, 0.8, 0.9)):
        cut = gf.truncate(whole, fraction)
        try:
            _refusal(tmp_path / f"cut{k}", route_for(None, label), cut, opts)
        except pytest.fail.Exception as exc:
            pytest.fail(f"source cut at byte {len(cut)} of {len(whole)}, threads={threads}: {exc}")


# --- validated outputs: malformed intervals are refused, naming the line -------------------------


def _data_line(text: str, near: int, is_header) -> int:
    """The 1-based number of the first data line at or after line ``near`` of ``text``."""
    lines = _source_lines(text)
    return next(k for k in range(near, len(lines) + 1) if lines[k - 1] and not is_header(lines[k - 1]))


def _index_refusal(tmp_path: Path, route, data: bytes) -> PipelineError:
    """The sort step accepts the source; the index step refuses it."""
    source = _write(tmp_path / "src" / "source.dat", data)
    workdir = tmp_path / "work"
    workdir.mkdir()
    sorted_data = _step(build_sorted, route, source, workdir, OPTS, workdir=workdir)
    # The index built during the sort gave up on the same record, leaving none (and the artifact whole).
    assert not sorted_data.with_name(f"{sorted_data.name}.tbi").exists()
    assert not list(workdir.glob("*.partial"))
    with pytest.raises(PipelineError) as info:
        _step(build_index, route, sorted_data, workdir, OPTS, workdir=workdir)
    return info.value


BED_TEXT = gf.bed_text(SEEDS["BED"])


@pytest.mark.parametrize(
    ("enc", "var", "where"),
    [("plain", "lf", 1234), ("gzip", "lf", 1234), ("bgzip", "crlf", 1234), ("plain", "crlf", 5),
     ("plain", "no_final_newline", -1), ("gzip", "lf", -1)],
    ids=lambda v: str(v),
)
def test_a_non_numeric_bed_start_is_refused_naming_its_line(tmp_path, enc, var, where):
    # Line numbers count every line of the file as given (headers, comments, CRLF, gzip); -1: the
    # last line, which the check reads after the rest of the stream has gone by.
    line = len(_source_lines(BED_TEXT)) if where == -1 else _data_line(BED_TEXT, where, _bed_header)
    text = gf.with_field(BED_TEXT, line, 2, "abc")

    error = _refusal(tmp_path, route_for(None, "BED"), gf.encode(gf.line_variant(text, var), enc))

    assert f"Line {line} of the BED file has a non-numeric start ('abc')" in str(error), str(error)
    assert error.permanent


@pytest.mark.parametrize(
    ("fmt", "column", "value", "problem"),
    [
        ("BED", 2, "-5", "has a negative start (-5)"),
        ("BED", 3, "12.5", "has a non-numeric end ('12.5')"),
        ("BED", 2, "", "has a non-numeric start ('')"),
        ("narrowPeak", 2, "1e3", "has a non-numeric start ('1e3')"),
        ("broadPeak", 3, "-1", "has a negative end (-1)"),
    ],
)
def test_malformed_bed_coordinates_are_refused_naming_the_line_and_the_problem(tmp_path, fmt, column, value, problem):
    text = FORMATS[fmt][2](SEEDS[fmt], False)
    line = _data_line(text, 777, _bed_header)

    error = _refusal(tmp_path, route_for(None, fmt), gf.with_field(text, line, column, value).encode())

    assert f"Line {line} of the {fmt} file {problem}" in str(error), str(error)


def test_only_the_first_bad_line_is_named(tmp_path):
    first, second = _data_line(BED_TEXT, 300, _bed_header), _data_line(BED_TEXT, 900, _bed_header)
    text = gf.with_field(gf.with_field(BED_TEXT, second, 2, "-7"), first, 3, "x")

    error = _refusal(tmp_path, route_for(None, "BED"), text.encode())

    assert f"Line {first} of the BED file has a non-numeric end ('x')" in str(error), str(error)


def test_space_separated_bed_is_refused_as_too_few_columns(tmp_path):
    text = BED_TEXT.replace("\t", " ")
    line = _data_line(text, 1, _bed_header)

    error = _refusal(tmp_path, route_for(None, "BED"), text.encode())

    assert f"Line {line} of the BED file has 1 tab-separated column, so no start (column 2)" in str(error), str(error)


@pytest.mark.parametrize("fmt", ["BED", "GFF3"])
def test_a_start_after_its_end_is_refused_by_the_index_step(tmp_path, fmt):
    # Comparing start with end is arithmetic: only tabix does it, when indexing (the sort step's
    # grep checks each coordinate's form); the source, and so its line numbers, is gone by then:
    # the refusal quotes the record instead.
    text = FORMATS[fmt][2](SEEDS[fmt], False)
    is_header = FORMATS[fmt][3]
    line = _data_line(text, 400, is_header)
    start_column = 2 if fmt == "BED" else 4
    start = int(_source_lines(text)[line - 1].split("\t")[start_column - 1])
    bad = gf.with_field(text, line, start_column + 1, str(start - 2))

    error = _index_refusal(tmp_path, route_for(None, fmt), bad.encode())

    assert f"The {fmt} file has a record whose start ({start}) is after its end ({start - 2})" in str(error), str(error)
    record = " ".join(bad.splitlines()[line - 1].split("\t"))  # the reversed record, quoted
    assert repr(record[:80]) in str(error), str(error)
    assert error.permanent


def test_a_vcf_without_its_chrom_line_is_refused_naming_the_first_record(tmp_path):
    text = "".join(ln + "\n" for ln in _source_lines(gf.vcf_text(SEEDS["VCF"])) if not ln.startswith("#CHROM"))
    first_record = _data_line(text, 1, lambda ln: ln.startswith("#"))
    assert first_record == 12  # the fixture's 11 meta lines, then records

    error = _refusal(tmp_path, route_for(None, "VCF"), gf.encode(text, "bgzip"))

    assert f"Line {first_record} of the VCF file is a record, but no '#CHROM' line" in str(error), str(error)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-header", "Line 1 of the VCF file is a record, but the file has no header"),
        ("no-fileformat", "Line 1 of the VCF file should be its '##fileformat=VCFv4.x' line"),
        ("chrom-line-with-spaces", "Line 12 of the VCF file should be the '#CHROM' line"),
        ("comment-after-chrom-line", "Line 13 of the VCF file should be the '#CHROM' line"),
    ],
)
def test_vcf_headers_that_browsers_reject_are_refused(tmp_path, case, expected):
    lines = _source_lines(gf.vcf_text(SEEDS["VCF"]))
    if case == "no-header":
        lines = [ln for ln in lines if not ln.startswith("#")]
    elif case == "no-fileformat":
        lines = lines[1:]
    elif case == "chrom-line-with-spaces":
        lines = [ln.replace("\t", " ") if ln.startswith("#CHROM") else ln for ln in lines]
    else:
        lines.insert(12, "# written by hand")

    error = _refusal(tmp_path, route_for(None, "VCF"), "\n".join(lines).encode() + b"\n")

    assert expected in str(error), str(error)


@pytest.mark.parametrize(
    ("value", "problem"), [("one", "has a non-numeric start ('one')"), ("0", "has start 0, but GFF coordinates start at 1")]
)
def test_malformed_gff3_starts_are_refused_naming_the_line(tmp_path, value, problem):
    text = gf.gff3_text(SEEDS["GFF3"])
    line = _data_line(text, 500, lambda ln: ln.startswith("#"))

    error = _refusal(tmp_path, route_for(None, "GFF3"), gf.encode(gf.with_field(text, line, 4, value), "gzip"))

    assert f"Line {line} of the GFF3 file {problem}" in str(error), str(error)


@pytest.mark.parametrize(("column", "value", "problem"), [
    (4, "abc", "has a non-numeric start ('abc')"),
    (5, "7", "has its start ({start}) after its end (7)"),
])
def test_malformed_gtf_coordinates_are_refused_with_the_gtf_line_not_the_converted_one(tmp_path, column, value, problem):
    # gffread would drop the first feature and swap the second's coordinates, saying so on stderr only.
    text = gf.gtf_text(SEEDS["GTF"])
    line = _data_line(text, 321, lambda ln: ln.startswith("#"))
    start = _source_lines(text)[line - 1].split("\t")[3]

    error = _refusal(tmp_path, route_for(None, "GTF"), gf.with_field(text, line, column, value).encode())

    assert f"Line {line} of the GTF file {problem.format(start=start)}" in str(error), str(error)


@pytest.mark.parametrize(
    ("label", "text"),
    [
        pytest.param("BED", "".join(f"#{ln}\n" for ln in _source_lines(BED_TEXT)), id="bed-every-record-commented-out"),
        pytest.param("GFF3", "##gff-version 3\n##FASTA\n>chr1\nACGT\nchr1\tx\tgene\t5\t50\t.\t+\t.\tID=a\n",
                     id="gff3-features-only-inside-the-fasta-section"),
        pytest.param("VCF", gf.vcf_text(1, records=False) + "\n\n", id="vcf-header-and-blank-lines"),
    ],
)
def test_a_file_whose_lines_are_all_dropped_is_refused_naming_them(tmp_path, label, text):
    error = _refusal(tmp_path, route_for(None, label), text.encode())

    n = len(_source_lines(text))
    assert f"Refusing to publish an empty {label} artifact: lines 1-{n} of the {label} file hold no record" in str(error), str(error)


def test_a_truncated_source_is_refused_as_truncated_not_as_a_bad_last_line(tmp_path):
    # bgzip -dc writes whole 64 KiB windows: a damaged third block stops it after the first one. A
    # padding comment puts that window's end inside a start column, so the stream's last line looks
    # malformed, but the news is the damaged file. One thread: nothing races the error.
    text = gf.bed_text(SEEDS["BED"], n=8000)
    start_column = text.index("\t", text.index("\n", 60_000) + 1) + 1
    text = "#" + "x" * (65_536 - start_column - 4) + "\n" + text
    whole = gf.encode(text, "bgzip")
    blocks = gf.bgzf_blocks(whole)
    opts = ToolOptions(threads=1, sort_memory=OPTS.sort_memory, compression_level=OPTS.compression_level)

    error = _refusal(tmp_path, route_for(None, "BED"), whole[: (blocks[2] + blocks[3]) // 2], opts)

    assert str(error).startswith("The BED file cannot be sorted"), str(error)
    assert "bgzf" in str(error).lower(), str(error)


def test_an_index_that_reaches_no_record_is_refused(tmp_path):
    # Data the sort step would refuse, indexed directly: tabix skips every line it cannot place and
    # writes an index that holds no contig; the region query around the first record finds nothing.
    data = _write(tmp_path / "data.bed.gz", gf.encode("chr1\tabc\t100\nchr1\tdef\t200\n", "bgzip"))
    (tmp_path / "work").mkdir()

    with pytest.raises(PipelineError) as info:
        _step(build_index, route_for(None, "BED"), data, tmp_path / "work", OPTS, workdir=tmp_path / "work")

    assert "its index does not return its first record" in str(info.value), str(info.value)


# --- already-sorted sources: no sort, the same bytes -----------------------------------------------


def _sorted_like_gnu_sort(text: str, keys: list[str]) -> str:
    """The records of ``text`` in the order `LC_ALL=C sort -t TAB <keys>` gives them, behind the
    leading header (comments further down are dropped, as the pipeline drops them)."""
    lines = text.splitlines(keepends=True)
    heading = ("#", "track", "browser")
    first = next(i for i, line in enumerate(lines) if not line.startswith(heading))
    header = lines[:first]
    body = "".join(line for line in lines[first:] if not line.startswith(heading))
    out = subprocess.run(["sort", "-t", "\t", *keys], input=body, text=True, capture_output=True, check=True,
                         env={"LC_ALL": "C"}).stdout
    return "".join(header) + out


def _commands(monkeypatch) -> list[str]:
    from cfdb_assets import intervals

    seen: list[str] = []
    real = intervals.run

    def spy(cmd, cwd, **kwargs):
        seen.append(cmd)
        return real(cmd, cwd, **kwargs)

    monkeypatch.setattr(intervals, "run", spy)
    return seen


def _sorts(commands: list[str]) -> int:
    return sum(" --parallel=" in cmd for cmd in commands)  # the GNU sort step, not the sort -C check


@pytest.mark.parametrize(("fmt", "text", "keys"), [
    ("BED", gf.bed_text(31, n=3000), ["-k1,1", "-k2,2n"]),
    ("VCF", gf.vcf_text(32), ["-k1,1", "-k2,2n"]),
    ("GFF3", gf.gff3_text(33, fasta=False), ["-k1,1", "-k4,4n"]),
])
def test_a_sorted_source_is_not_sorted_again_and_gives_the_same_bytes(tmp_path, monkeypatch, fmt, text, keys):
    route = route_for(None, fmt)
    unsorted, ordered = tmp_path / "unsorted", tmp_path / "sorted"
    for path in (unsorted, ordered):
        (path / "work").mkdir(parents=True)
    _write(unsorted / "source", text.encode())
    _write(ordered / "source", _sorted_like_gnu_sort(text, keys).encode())
    commands = _commands(monkeypatch)

    sorted_by_us = build_sorted(route, unsorted / "source", unsorted / "work", OPTS)
    assert _sorts(commands) == 1  # out of order: the check stopped the first pass, then the sort ran
    commands.clear()
    passed_through = build_sorted(route, ordered / "source", ordered / "work", OPTS)
    assert _sorts(commands) == 0, commands  # already in order: one pass, no sort

    assert passed_through.read_bytes() == sorted_by_us.read_bytes()


def test_a_source_out_of_order_only_at_its_last_record_is_sorted(tmp_path, monkeypatch):
    # The check finds the disorder after the pass has written everything: the output must not be used.
    text = _sorted_like_gnu_sort(gf.bed_text(34, n=3000), ["-k1,1", "-k2,2n"])
    lines = text.splitlines(keepends=True)
    lines[-1], lines[-2] = lines[-2], lines[-1]
    if lines[-1] == lines[-2] or lines[-1].split("\t")[:2] == lines[-2].split("\t")[:2]:
        pytest.skip("the generator gave the last two records the same key")  # never for this seed
    _write(tmp_path / "source", "".join(lines).encode())
    (tmp_path / "work").mkdir()
    commands = _commands(monkeypatch)

    data = build_sorted(route_for(None, "BED"), tmp_path / "source", tmp_path / "work", OPTS)

    assert _sorts(commands) == 1
    body = [line for line in gzip.decompress(data.read_bytes()).decode().splitlines(keepends=True)
            if not line.startswith("#")]
    expected = _sorted_like_gnu_sort("".join(lines), ["-k1,1", "-k2,2n"]).splitlines(keepends=True)
    assert body == [line for line in expected if not line.startswith(("#", "track", "browser"))]


def test_a_sorted_bam_whose_header_does_not_say_so_is_still_used_as_it_is(tmp_path):
    # Sorted while it arrives (no SO:coordinate), then found sorted once complete: the sort is
    # cancelled and the artifact is the source's own bytes, as when the header says so.
    sam = gf.sam_text(SEEDS.get("BAM", 5)).replace("SO:coordinate", "SO:unknown")
    unsorted = gf.write_bam(sam, tmp_path / "unsorted.bam")
    source = tmp_path / "sorted.bam"
    subprocess.run(["samtools", "sort", "--no-PG", "-o", str(source), str(unsorted)], check=True)
    subprocess.run(f"samtools view -H --no-PG {source} | sed 's/SO:coordinate/SO:unknown/' > h.sam && "
                   f"samtools reheader --no-PG h.sam {source} > {tmp_path / 'nohint.bam'}",
                   shell=True, check=True, cwd=tmp_path)
    assert b"SO:coordinate" not in subprocess.run(["samtools", "view", "-H", str(tmp_path / "nohint.bam")],
                                                  capture_output=True, check=True).stdout
    (tmp_path / "work").mkdir()

    data = build_sorted(route_for(None, "BAM"), tmp_path / "nohint.bam", tmp_path / "work", OPTS)

    assert data.read_bytes() == (tmp_path / "nohint.bam").read_bytes()
    assert (tmp_path / "work" / "sorted.bam.bai").is_file()
