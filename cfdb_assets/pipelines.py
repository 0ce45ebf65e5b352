"""The tool pipelines: source file → sorted, block-compressed data → index.

Each step is a shell pipeline run under ``bash -o pipefail`` in its own process group (killed whole
on cancellation), with ``LC_ALL=C`` and temp files inside the run's work directory. Pure: imports
neither Dagster nor Starlette.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cfdb_assets.formats import ALIGNMENTS, INTERVALS, Route

__all__ = [
    "PipelineError",
    "ToolError",
    "ToolOptions",
    "build_index",
    "build_sorted",
    "run",
    "tool_versions",
]

BAI_MAX = 2**29 - 1  # BAI/TBI cannot index coordinates beyond this; CSI can
_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)*[\w.+-]+")


class PipelineError(Exception):
    """The source cannot be turned into artifacts (bad content, unsorted, empty, ...).

    Permanent: retrying the same bytes gives the same error."""


class ToolError(Exception):
    """A tool failed; the message carries the tail of its stderr with paths scrubbed."""


@dataclass(frozen=True)
class ToolOptions:
    threads: int = 2
    sort_memory: str = "768M"  # per thread for samtools sort; the whole buffer for GNU sort
    compression_level: int = 6


def scrub(text: str) -> str:
    """Replace absolute paths with ``<path>`` (job errors are public)."""
    return _PATH.sub("<path>", text)


def run(cmd: str, cwd: Path) -> str:
    """Run ``cmd`` under bash -o pipefail in its own process group; return stdout.

    On any interruption (a cancelled Dagster run raises in this thread) the whole group is killed,
    so no samtools or sort outlives its run."""
    env = {**os.environ, "LC_ALL": "C", "TMPDIR": str(cwd)}
    proc = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])[-800:]
        tool = cmd.split()[0]
        raise ToolError(f"{tool} failed (exit {proc.returncode}): {scrub(tail) or 'no error output'}")
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


@functools.cache
def tool_versions() -> dict[str, str]:
    """First version line of each tool (recorded in every manifest)."""
    versions = {}
    for tool, cmd in {"samtools": "samtools --version", "htslib": "bgzip --version", "sort": "sort --version"}.items():
        try:
            out = subprocess.run(shlex.split(cmd), capture_output=True, check=True).stdout.decode(errors="replace")
            versions[tool] = out.splitlines()[0].strip()
        except (OSError, subprocess.CalledProcessError, IndexError):
            versions[tool] = "unavailable"
    return versions


def _magic(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(8)


def build_sorted(route: Route, source: Path, workdir: Path, opts: ToolOptions) -> Path:
    """Turn a downloaded source into the sorted, block-compressed data artifact (in ``workdir``)."""
    if route.family == ALIGNMENTS:
        return _sorted_alignments(route, source, workdir, opts)
    if route.family == INTERVALS:
        return _sorted_intervals(route, source, workdir, opts)
    raise PipelineError(f"{route.format} files are not processed (family {route.family}).")


def build_index(route: Route, data: Path, workdir: Path, opts: ToolOptions) -> tuple[Path, str]:
    """Index the data artifact; returns the index file (in ``workdir``) and its kind (bai/tbi/csi)."""
    link = workdir / data.name
    if link.resolve() != data.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(data)  # index tools write next to their input: keep that in workdir
    q = shlex.quote(link.name)
    if route.family == ALIGNMENTS:
        kind = "csi" if _max_reference_length(link, workdir) > BAI_MAX else "bai"
        flag = "-c" if kind == "csi" else "-b"
        run(f"samtools index {flag} -@ {opts.threads} -o {q}.{kind} {q}", workdir)
        return workdir / f"{link.name}.{kind}", kind
    try:
        run(f"tabix -f -p {route.preset} {q}", workdir)
        return workdir / f"{link.name}.tbi", "tbi"
    except ToolError as exc:
        if "csi" not in str(exc).lower():
            raise
    # A coordinate beyond 2^29-1: only CSI can hold it.
    run(f"tabix -f -C -p {route.preset} {q}", workdir)
    return workdir / f"{link.name}.csi", "csi"


def _max_reference_length(bam: Path, workdir: Path) -> int:
    header = run(f"samtools view -H {shlex.quote(bam.name)}", workdir)
    lengths = [int(m) for m in re.findall(r"^@SQ\t.*?\bLN:(\d+)", header, flags=re.MULTILINE)]
    return max(lengths, default=0)


def _sorted_alignments(route: Route, source: Path, workdir: Path, opts: ToolOptions) -> Path:
    out = workdir / "sorted.bam"
    src = shlex.quote(str(source))
    if route.format == "BAM" and _magic(source)[:2] == b"\x1f\x8b":
        # Already coordinate-sorted? Indexing proves it (htslib refuses unsorted positions), and
        # costs a fraction of a sort. The header's SO tag alone is not trusted.
        try:
            run(f"samtools index -b -o probe.bai {src}", workdir)
            os.link(source, out)
            return out
        except ToolError as exc:
            if "unsorted" not in str(exc).lower() and "not continuous" not in str(exc).lower():
                raise PipelineError(f"The BAM file cannot be read: {exc}") from None
        finally:
            (workdir / "probe.bai").unlink(missing_ok=True)
    (workdir / "sort_tmp").mkdir(exist_ok=True)
    try:
        run(
            f"samtools sort -@ {opts.threads} -m {opts.sort_memory} -l {opts.compression_level} "
            f"-T sort_tmp/part -o {shlex.quote(out.name)} {src}",
            workdir,
        )
    except ToolError as exc:
        raise PipelineError(f"The {route.format} file cannot be sorted: {exc}") from None
    return out


# Per preset: the sort keys, and an awk program that keeps header lines (in their original order)
# out of the sort, drops empty lines, and counts data lines. GFF3's ##FASTA section is dropped.
_INTERVAL_SORT = {"bed": "-k1,1 -k2,2n", "vcf": "-k1,1 -k2,2n", "gff": "-k1,1 -k4,4n"}
_HEADER_RULES = {
    "bed": r"/^(track|browser)([ \t]|$)/ || /^#/",
    "vcf": r"/^#/",
    "gff": r"/^#/",
}


def _sorted_intervals(route: Route, source: Path, workdir: Path, opts: ToolOptions) -> Path:
    out = workdir / route.data_name
    magic = _magic(source)
    src = shlex.quote(str(source))
    decompress = f"bgzip -dc -@ {opts.threads} {src}" if magic[:2] == b"\x1f\x8b" else f"cat {src}"
    if route.format == "GTF":
        run(f"{decompress} > source.gtf && gffread -E -F --keep-comments -o source.gff3 source.gtf", workdir)
        decompress = "cat source.gff3"
    fasta = "fasta{next} /^##FASTA/{fasta=1; next} " if route.preset == "gff" else ""
    awk = (
        "awk -v H=header.txt -v C=count.txt "
        f"'BEGIN{{printf \"\" > H}} {fasta}/^$/{{next}} {_HEADER_RULES[route.preset]}{{print > H; next}} "
        "{n++; print} END{print n+0 > C}'"
    )
    sort = (
        f"sort -t \"$(printf '\\t')\" {_INTERVAL_SORT[route.preset]} -S {opts.sort_memory} "
        f"--parallel={opts.threads} -T sort_tmp"
    )
    # The sorted body starts only after awk has finished, so header.txt is complete by then.
    emit = 'if IFS= read -r first; then cat header.txt; printf "%s\\n" "$first"; cat; fi'
    (workdir / "sort_tmp").mkdir(exist_ok=True)
    run(
        f"{decompress} | tr -d '\\r' | {awk} | {sort} | {{ {emit}; }} "
        f"| bgzip -@ {opts.threads} -l {opts.compression_level} -c > {shlex.quote(out.name)}",
        workdir,
    )
    count = int((workdir / "count.txt").read_text().strip() or 0)
    if count == 0:
        raise PipelineError(
            f"Refusing to publish an empty {route.format} artifact: the source has zero data lines "
            "after removing headers and comments."
        )
    return out
