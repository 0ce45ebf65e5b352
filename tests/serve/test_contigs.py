"""GET /files/{dcc}/{local_id}/contigs and the parsers behind it (serve.genomic_index), checked
against pysam on real artifacts (BAI, TBI) and on CSI indexes pysam writes, and a bigWig."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pysam
import pytest
from starlette.testclient import TestClient

from resources import LocalStore, Settings
from serve.app import create_app
from serve.contigs import bigwig_file_contigs, indexed_file_contigs
from serve.genomic_index import IndexFormatError, inflate, parse_index
from synthetic.small import bed_text, sam_text
from tests.helpers import build_artifacts

BUILT = [("encode", "ENCFF000SAM"), ("encode", "ENCFF000BED"), ("encode", "ENCFF000NPK"),
         ("4dn", "4DNFIVCF0001"), ("4dn", "4DNFIGFF0001")]


def _reader(path: Path):
    data = path.read_bytes()
    return lambda start, end: data[start:end]


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_dir):
    """The demo files above built for real (samtools, bgzip, tabix), once for the module."""
    root = tmp_path_factory.mktemp("contigs")
    settings = Settings.from_environ({"CFDB_DATA_DIR": str(root / "data"), "CFDB_CATALOG": str(demo_dir / "catalog.jsonl")})
    LocalStore(root=settings.store).check()
    paths = {}
    for dcc, local_id in BUILT:
        key, result = build_artifacts(settings, dcc, local_id)
        assert result.success, local_id
        manifest = LocalStore(root=settings.store).manifest(key)
        folder = Path(settings.store) / key
        paths[local_id] = (folder / manifest.data.name, folder / manifest.index.name)
    return settings, paths


def _tabix_truth(data: Path, index: Path):
    with pysam.TabixFile(str(data), index=str(index)) as tbx:
        contigs = list(tbx.contigs)
        rows = {c: [line.split("\t") for line in tbx.fetch(c)] for c in contigs}
    return contigs, rows


def test_bam_contigs_lengths_counts_and_first_read_match_pysam(built):
    _, paths = built
    bam, bai = paths["ENCFF000SAM"]
    found = indexed_file_contigs(_reader(bam), bai.read_bytes())
    with pysam.AlignmentFile(str(bam), "rb", index_filename=str(bai)) as aln:
        stats = [s for s in aln.get_index_statistics() if s.mapped + s.unmapped > 0]
        lengths = dict(zip(aln.references, aln.lengths, strict=True))
        first = next(aln.fetch(stats[0].contig))
    assert [c.name for c in found.contigs] == [s.contig for s in stats]
    assert [(c.length, c.declared, c.records) for c in found.contigs] == [(lengths[s.contig], True, s.mapped) for s in stats]
    assert found.first == (stats[0].contig, first.reference_start, first.reference_end)


@pytest.mark.parametrize("local_id", ["ENCFF000BED", "ENCFF000NPK", "4DNFIVCF0001", "4DNFIGFF0001"])
def test_tabix_contigs_counts_and_first_record_match_pysam(built, local_id):
    _, paths = built
    data, tbi = paths[local_id]
    found = indexed_file_contigs(_reader(data), tbi.read_bytes())
    contigs, rows = _tabix_truth(data, tbi)
    assert [c.name for c in found.contigs] == contigs
    assert [c.records for c in found.contigs] == [len(rows[c]) for c in contigs]
    fields = rows[contigs[0]][0]
    if local_id.startswith("ENCFF"):  # BED: 0-based, half-open
        assert found.first == (contigs[0], int(fields[1]), int(fields[2]))
    elif local_id.startswith("4DNFIVCF"):  # VCF: POS is 1-based; the REF allele's span
        assert found.first == (contigs[0], int(fields[1]) - 1, int(fields[1]) - 1 + len(fields[3]))
    else:  # GFF3: 1-based, closed
        assert found.first == (contigs[0], int(fields[3]) - 1, int(fields[4]))


def test_declared_lengths_come_from_vcf_and_gff3_headers_and_bed_gets_a_bound(built):
    _, paths = built
    for local_id in ("4DNFIVCF0001", "4DNFIGFF0001"):
        data, tbi = paths[local_id]
        with pysam.TabixFile(str(data), index=str(tbi)) as tbx:
            header = "\n".join(tbx.header)
        for contig in indexed_file_contigs(_reader(data), tbi.read_bytes()).contigs:
            assert contig.declared
            assert f"ID={contig.name},length={contig.length}" in header or \
                f"##sequence-region {contig.name} 1 {contig.length}" in header
    data, tbi = paths["ENCFF000BED"]
    _, rows = _tabix_truth(data, tbi)
    for contig in indexed_file_contigs(_reader(data), tbi.read_bytes()).contigs:
        ends = max(int(f[2]) for f in rows[contig.name])
        assert not contig.declared and ends <= contig.length < ends + (1 << 14)


def test_csi_indexes_of_bam_and_bed_read_like_their_bai_and_tbi(tmp_path):
    sam = tmp_path / "reads.sam"
    sam.write_text(sam_text(5, 300, unmapped=0, placed_unmapped=0, order="coordinate"))
    bam = tmp_path / "reads.bam"
    pysam.sort("-o", str(bam), str(sam))
    pysam.index("-c", str(bam))  # reads.bam.csi
    pysam.index(str(bam))  # reads.bam.bai
    with_csi = indexed_file_contigs(_reader(bam), (tmp_path / "reads.bam.csi").read_bytes())
    with_bai = indexed_file_contigs(_reader(bam), (tmp_path / "reads.bam.bai").read_bytes())
    assert parse_index((tmp_path / "reads.bam.csi").read_bytes()).kind == "csi"
    assert with_csi == with_bai

    bed = tmp_path / "peaks.bed"
    rows = sorted((line.split("\t") for line in bed_text(9, 400).splitlines()
                   if line and not line.startswith(("#", "track", "browser"))), key=lambda f: (f[0], int(f[1])))
    bed.write_text("".join("\t".join(f) + "\n" for f in rows))
    csi = Path(pysam.tabix_index(str(bed), preset="bed", csi=True, force=True))
    found = indexed_file_contigs(_reader(csi), Path(f"{csi}.csi").read_bytes())
    by_contig = {}
    for f in rows:
        by_contig.setdefault(f[0], []).append(f)
    assert [c.name for c in found.contigs] == list(by_contig)
    assert [c.records for c in found.contigs] == [len(v) for v in by_contig.values()]
    assert all(c.length >= max(int(f[2]) for f in by_contig[c.name]) for c in found.contigs)
    assert found.first == (rows[0][0], int(rows[0][1]), int(rows[0][2]))


def test_bigwig_chromosomes_come_from_its_header(tmp_path):
    import pyBigWig

    path = tmp_path / "signal.bw"
    writer = pyBigWig.open(str(path), "w")
    writer.addHeader([("chr2", 800_000), ("chr10", 600_000), ("chrUn_KI270742v1", 186_739)])
    writer.addEntries(["chr2", "chr10"], [100, 200], ends=[150, 260], values=[1.0, 2.5])
    writer.close()
    found = bigwig_file_contigs(_reader(path))
    assert {(c.name, c.length, c.declared) for c in found.contigs} == {
        ("chr2", 800_000, True), ("chr10", 600_000, True), ("chrUn_KI270742v1", 186_739, True)}
    assert found.first is None


def test_malformed_indexes_and_blocks_are_refused_with_a_sentence():
    with pytest.raises(IndexFormatError, match="Not a BAI, TBI or CSI index"):
        parse_index(b"NOPE" + bytes(40))
    with pytest.raises(IndexFormatError, match="ends early"):
        parse_index(b"BAI\1" + (3).to_bytes(4, "little"))
    with pytest.raises(IndexFormatError, match="Not BGZF"):
        inflate(gzip.compress(b"plain gzip has no block size", mtime=0) + bytes(20))
    with pytest.raises(IndexFormatError, match="Not a bigWig"):
        bigwig_file_contigs(lambda start, end: bytes(end - start))


def test_inflate_leaves_out_a_block_cut_short(built):
    _, paths = built
    data = paths["ENCFF000SAM"][0].read_bytes()  # a BAM of several BGZF blocks
    whole, part = inflate(data), inflate(data[: len(data) // 2])
    assert 0 < len(part) < len(whole) and whole.startswith(part)


def test_contigs_endpoint_answers_ready_files_and_says_why_not_otherwise(built, tmp_path):
    settings, paths = built
    with TestClient(create_app(settings)) as client:
        ready = client.get("/files/encode/ENCFF000SAM/contigs", headers={"Origin": "https://gosling.example"})
        assert ready.status_code == 200 and ready.headers["access-control-allow-origin"] == "*"
        body = ready.json()
        bam, bai = paths["ENCFF000SAM"]
        assert body == json.loads(json.dumps(indexed_file_contigs(_reader(bam), bai.read_bytes()).to_json()))
        assert body["first"]["contig"] == body["contigs"][0]["name"]
        assert set(body["contigs"][0]) == {"name", "length", "length_declared", "records"}

        cold = client.get("/files/hubmap/HBM000BED/contigs")
        assert cold.status_code == 404 and cold.json()["detail"].startswith("The file is missing: its contigs")
        assert client.get("/files/encode/ENCFF000CSV/contigs").status_code == 404
        assert client.get("/files/encode/NOPE/contigs").json()["detail"] == "File not found"
        assert client.get("/files/hubmap/HBM000PROT/contigs").status_code == 403
        assert client.get("/files/encode/ENCFF000SAM").json()["size"] == (
            Path(settings.catalog).parent / "sources" / "ENCFF000SAM.sam").stat().st_size


def test_contigs_endpoint_reads_a_bigwig_passthrough_upstream(tmp_path):
    import pyBigWig

    bigwig = tmp_path / "signal.bw"
    writer = pyBigWig.open(str(bigwig), "w")
    writer.addHeader([("chr1", 1_000_000), ("chr2", 800_000)])
    writer.addEntries(["chr1"], [10], ends=[20], values=[3.0])
    writer.close()
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"submission": "encode", "local_id": "ENCFFBW", "md5": "c" * 32,
                                   "access_url": bigwig.as_uri(), "file_format": {"id": "format:3006"}}) + "\n")
    settings = Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(catalog)})
    with TestClient(create_app(settings)) as client:
        body = client.get("/files/encode/ENCFFBW/contigs").json()
        (tmp_path / "broken.bw").write_bytes(b"not a bigwig at all" * 10)
        shutil.copy(tmp_path / "broken.bw", bigwig)
        broken = client.get("/files/encode/ENCFFBW/contigs")
    assert body == {"contigs": [{"name": "chr1", "length": 1_000_000, "length_declared": True, "records": None},
                                {"name": "chr2", "length": 800_000, "length_declared": True, "records": None}],
                    "first": None}
    assert broken.status_code == 502 and broken.json()["detail"] == "The upstream bigWig cannot be read: Not a bigWig file."
