"""Our tool pipelines vs the plain command-line floor, on ~1 GB generated inputs.

Generates on this machine, deterministically (``--seed``), an unsorted BAM (~10 M reads of 150 bp on
hg38 contigs, random bases, NovaSeq-binned qualities), the same reads coordinate-sorted, and an
unsorted narrowPeak-like BED (~15 M lines), each ~``--gb`` GB (10^9 bytes). Then times, alternately
(ours, floor, ours, floor, ... with ``--repeat``; medians reported):

  (a) unsorted BAM -> sorted BAM + BAI: ``build_sorted`` + ``build_index`` vs
      ``samtools sort`` + ``samtools index`` with the same threads / memory / level (as in the
      assets, ``build_index`` is skipped when the sort already wrote the index, see
      ``index_kind_of``; ``--always-build-index`` calls it anyway);
  (b) BED -> bgzip + TBI: ours vs ``LC_ALL=C sort | bgzip`` + ``tabix -p bed``;
  (c) already-sorted BAM (our index-only path) vs ``samtools index`` alone;
  (d) our time-to-ready and output bytes per compression level (``--levels``), BED and BAM.

Each measurement runs in a fresh helper process; wall time is taken around the work only and peak
memory is that helper's RUSAGE_CHILDREN ``ru_maxrss``: the largest single tool process, not the sum
of a pipeline's concurrent processes. Inputs are read warm from the page cache by both sides.
Generated files live in a temp dir under ``.cfdb/bench`` (removed at the end) or, with ``--keep``,
in ``.cfdb/bench/cache`` for the next run. Disk: ~5x ``--gb`` GB at peak (4.8 GB seen at 1 GB).

    .venv/bin/python bench/pipelines.py [--gb 1.0] [--repeat 1] [--threads 2] [--sort-memory 768M]
                                        [--level 6] [--levels 1,6] [--keep] [--check]
                                        [--always-build-index]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic.large import GB, READ_LEN, bam_bytes_per_read, write_bam, write_bed  # noqa: E402

BAM_ROUTE = ("format:2572", "BAM")
BED_ROUTE = ("format:3003", "BED")


@dataclass
class Inputs:
    unsorted_bam: Path
    sorted_bam: Path
    bed: Path
    reads: int
    bed_lines: int
    notes: list[str] = field(default_factory=list)


def prepare_inputs(directory: Path, gb: float, seed: int, threads: int, sort_memory: str) -> Inputs:
    """Generate (or reuse, when cached by ``--keep``) the three inputs; files appear atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{gb:g}gb-seed{seed}"
    meta_path = directory / f"inputs-{stem}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    inputs = Inputs(
        directory / f"reads-{stem}-unsorted.bam",
        directory / f"reads-{stem}-sorted.bam",
        directory / f"peaks-{stem}.bed",
        meta.get("reads", 0),
        meta.get("bed_lines", 0),
    )
    target = int(gb * GB)

    if inputs.unsorted_bam.exists() and inputs.reads:
        inputs.notes.append(f"unsorted BAM reused from {directory}")
    else:
        started = time.perf_counter()
        bpr = bam_bytes_per_read(seed, directory)
        inputs.reads = max(1000, round(target / bpr))
        tmp = inputs.unsorted_bam.with_suffix(".partial")
        write_bam(tmp, random.Random(seed), inputs.reads)
        tmp.replace(inputs.unsorted_bam)
        inputs.notes.append(
            f"unsorted BAM generated in {time.perf_counter() - started:.0f} s "
            f"({bpr:.1f} B/read calibrated)"
        )

    if inputs.sorted_bam.exists():
        inputs.notes.append("sorted BAM reused")
    else:
        started = time.perf_counter()
        tmp = inputs.sorted_bam.with_suffix(".partial")
        sort_tmp = Path(tempfile.mkdtemp(prefix="sort-", dir=directory))
        try:
            subprocess.run(
                ["samtools", "sort", "--no-PG", f"-@{threads}", "-m", sort_memory, "-l", "6",
                 "-T", str(sort_tmp / "part"), "-O", "bam", "-o", str(tmp), str(inputs.unsorted_bam)],
                check=True, stderr=subprocess.DEVNULL,
            )
        finally:
            shutil.rmtree(sort_tmp, ignore_errors=True)
        tmp.replace(inputs.sorted_bam)
        inputs.notes.append(
            f"sorted BAM made with samtools sort -l 6 in {time.perf_counter() - started:.0f} s"
        )

    if inputs.bed.exists() and inputs.bed_lines:
        inputs.notes.append("BED reused")
    else:
        started = time.perf_counter()
        tmp = inputs.bed.with_suffix(".partial")
        inputs.bed_lines = write_bed(tmp, random.Random(seed + 2), target)
        tmp.replace(inputs.bed)
        inputs.notes.append(f"BED generated in {time.perf_counter() - started:.0f} s")

    meta_path.write_text(json.dumps({"reads": inputs.reads, "bed_lines": inputs.bed_lines}))
    return inputs


# --------------------------------------------------------------------------- one measurement
# Runs as `python bench/pipelines.py _measure SPEC_JSON` in a fresh process, so that its
# RUSAGE_CHILDREN covers exactly one measurement. Prints one JSON line.


def _measure(spec: dict) -> dict:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through pipelines.run()
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {"error": None, "steps": {}, "outputs": []}
    if spec["side"] == "ours":
        from cfdb_assets import pipelines
        from cfdb_assets.formats import route_for

        result["pipelines_sha"] = hashlib.sha256(Path(pipelines.__file__).read_bytes()).hexdigest()[:12]
        route = route_for(*spec["route"])
        opts = pipelines.ToolOptions(spec["threads"], spec["sort_memory"], spec["level"])
        started = time.perf_counter()
        try:
            t = time.perf_counter()
            data = pipelines.build_sorted(route, Path(spec["source"]), workdir, opts)
            result["steps"]["build_sorted"] = time.perf_counter() - t
            # As the assets do: an index the sort already wrote next to the data is used as is.
            index_kind_of = getattr(pipelines, "index_kind_of", None)
            kind = None if spec["always_index"] or index_kind_of is None else index_kind_of(data)
            if kind:
                index = data.with_name(f"{data.name}.{kind}")
                result["steps"]["(index by sort)"] = 0.0
            else:
                t = time.perf_counter()
                index, kind = pipelines.build_index(route, data, workdir, opts)
                result["steps"]["build_index"] = time.perf_counter() - t
            result["outputs"] = [str(data), str(index)]
            result["index_kind"] = kind
        except Exception as exc:  # noqa: BLE001 - any failure of ours is a result to report
            result["error"] = f"{type(exc).__name__}: {exc}"
    else:
        env = {**os.environ, "LC_ALL": "C", "TMPDIR": str(workdir)}
        started = time.perf_counter()
        for label, cmd in spec["commands"]:
            t = time.perf_counter()
            proc = subprocess.run(
                ["bash", "-o", "pipefail", "-c", cmd], cwd=workdir, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, errors="replace",
            )
            result["steps"][label] = time.perf_counter() - t
            if proc.returncode != 0:
                result["error"] = f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"
                break
        result["outputs"] = [str(workdir / name) for name in spec["outputs"]]
    result["wall"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["maxrss_kib"] = usage.ru_maxrss
    result["cpu"] = usage.ru_utime + usage.ru_stime
    result["bytes"] = [Path(p).stat().st_size if Path(p).exists() else None for p in result["outputs"]]
    if spec.get("digest") and not result["error"]:
        result["digest"] = _digest(Path(result["outputs"][0]), spec["threads"])
    return result


def _digest(data: Path, threads: int) -> str:
    """md5 of the records (BAM, header excluded: @PG lines differ) or of the decompressed text."""
    q = shlex.quote(str(data))
    cmd = f"samtools view -@{threads} {q}" if data.suffix == ".bam" else f"bgzip -dc {q}"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", f"{cmd} | md5sum"],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


# --------------------------------------------------------------------------- driver


@dataclass
class Sample:
    wall: float | None
    maxrss_kib: int | None
    cpu: float | None
    bytes: list
    error: str | None
    steps: dict
    digest: str | None = None
    pipelines_sha: str | None = None


class Bench:
    def __init__(self, args: argparse.Namespace, run_dir: Path):
        self.args = args
        self.run_dir = run_dir
        self.counter = 0
        self.pipelines_shas: set[str] = set()

    def measure(self, label: str, spec: dict) -> Sample:
        """Run one measurement in a fresh helper process and a fresh work dir (removed after)."""
        self.counter += 1
        workdir = self.run_dir / f"m{self.counter:03d}-{label.replace(' ', '_')}"
        spec = {**spec, "workdir": str(workdir), "threads": self.args.threads,
                "sort_memory": self.args.sort_memory, "digest": self.args.check,
                "always_index": self.args.always_build_index}
        os.sync()  # earlier outputs' dirty pages are not written back during this measurement
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_measure", json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            out, err = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            tail = " | ".join(err.strip().splitlines()[-6:])
            sample = Sample(None, None, None, [], f"helper exit {proc.returncode}: {tail}", {})
        else:
            sample = Sample(r["wall"], r["maxrss_kib"], r["cpu"], r["bytes"], r["error"], r["steps"],
                            r.get("digest"), r.get("pipelines_sha"))
        if sample.pipelines_sha:
            self.pipelines_shas.add(sample.pipelines_sha)
        if sample.error:
            print(f"    {label}: FAILED after {fmt_s(sample.wall)}: {sample.error}", flush=True)
        else:
            steps = ", ".join(f"{k} {v:.1f}" for k, v in sample.steps.items())
            print(f"    {label}: {sample.wall:.1f} s ({steps}); max RSS {fmt_mib(sample.maxrss_kib)}; "
                  f"cpu {sample.cpu:.1f} s; out {' + '.join(fmt_bytes(b) for b in sample.bytes)}",
                  flush=True)
        return sample

    def compare(self, title: str, ours: dict, floor: dict) -> tuple[list[Sample], list[Sample]]:
        """ours, floor, ours, floor, ... (``--repeat`` pairs)."""
        print(f"\n{title}", flush=True)
        mine, theirs = [], []
        for i in range(self.args.repeat):
            mine.append(self.measure(f"ours#{i + 1}", ours))
            theirs.append(self.measure(f"floor#{i + 1}", floor))
        return mine, theirs


def median_wall(samples: list[Sample]) -> float | None:
    walls = [s.wall for s in samples if not s.error]
    return statistics.median(walls) if walls and len(walls) == len(samples) else None


def peak_rss(samples: list[Sample]) -> int | None:
    values = [s.maxrss_kib for s in samples if s.maxrss_kib is not None and not s.error]
    return max(values) if values else None


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode(errors="replace")
        return out.splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unavailable"


def print_environment(args: argparse.Namespace) -> None:
    pipelines_py = ROOT / "cfdb_assets" / "pipelines.py"
    head = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", str(pipelines_py)],
                           capture_output=True, text=True).stdout.strip()
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    print(f"cfdb-assets pipeline benchmark  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"  machine: {os.cpu_count()} cores, {int(mem) / 2**20:.1f} GiB RAM, {platform.platform()}")
    print(f"  tools: {first_line(['samtools', '--version'])}; {first_line(['bgzip', '--version'])}; "
          f"{first_line(['sort', '--version'])}; Python {platform.python_version()}")
    sha = hashlib.sha256(pipelines_py.read_bytes()).hexdigest()[:12]
    print(f"  code: git {head}, pipelines.py sha256 {sha} ({'modified' if dirty else 'as committed'})")
    print(f"  settings: --gb {args.gb:g} --threads {args.threads} --sort-memory {args.sort_memory} "
          f"--level {args.level} --levels {','.join(map(str, args.levels))} --repeat {args.repeat} "
          f"--seed {args.seed}{' --keep' if args.keep else ''}{' --check' if args.check else ''}"
          f"{' --always-build-index' if args.always_build_index else ''}",
          flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of each input, GB (10^9 bytes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sort-memory", default="768M",
                        help="samtools sort -m (per thread) / GNU sort -S (whole buffer)")
    parser.add_argument("--level", type=int, default=6, help="compression level for (a) and (b)")
    parser.add_argument("--levels", default="1,6", help="levels for table (d), e.g. 1,4,6")
    parser.add_argument("--repeat", type=int, default=1, help="pairs per comparison; medians reported")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated inputs in --cache-dir and reuse them next time")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cfdb" / "bench" / "cache")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cfdb" / "bench",
                        help="where the temp run dir goes (same filesystem as --cache-dir)")
    parser.add_argument("--always-build-index", action="store_true",
                        help="call build_index even when build_sorted already wrote the index")
    parser.add_argument("--check", action="store_true",
                        help="also compare ours vs floor output records (md5, untimed)")
    args = parser.parse_args(argv)
    args.levels = sorted({int(x) for x in args.levels.split(",") if x.strip()})
    if args.repeat < 1 or args.threads < 1 or args.gb <= 0:
        parser.error("--repeat, --threads and --gb must be positive")
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_measure":
        print(json.dumps(_measure(json.loads(sys.argv[2]))))
        return
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below cleans up
    args.workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.workdir).free
    if free < 8 * args.gb * GB:
        sys.exit(f"need ~{8 * args.gb:.0f} GB free under {args.workdir}, have {free / GB:.0f} GB")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    try:
        print_environment(args)
        bench(args, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def bench(args: argparse.Namespace, run_dir: Path) -> None:
    T, M, L = args.threads, args.sort_memory, args.level
    inputs = prepare_inputs(args.cache_dir if args.keep else run_dir / "inputs", args.gb, args.seed,
                            T, M)
    print("\nInputs:")
    print(f"  unsorted BAM {inputs.unsorted_bam}: {fmt_bytes(inputs.unsorted_bam.stat().st_size)}, "
          f"{inputs.reads:,} reads x {READ_LEN} bp")
    print(f"  sorted BAM   {inputs.sorted_bam}: {fmt_bytes(inputs.sorted_bam.stat().st_size)}")
    print(f"  BED          {inputs.bed}: {fmt_bytes(inputs.bed.stat().st_size)}, "
          f"{inputs.bed_lines:,} narrowPeak lines")
    for note in inputs.notes:
        print(f"  ({note})")
    sys.stdout.flush()

    b = Bench(args, run_dir)
    ubam, sbam, bed = (shlex.quote(str(p)) for p in (inputs.unsorted_bam, inputs.sorted_bam, inputs.bed))

    def bam_floor(level: int) -> dict:
        return {"side": "floor", "outputs": ["out.bam", "out.bam.bai"], "commands": [
            ("sort", f"samtools sort -@{T} -m {M} -l {level} -o out.bam {ubam}"),
            ("index", f"samtools index -@{T} out.bam"),
        ]}

    def bed_floor(level: int) -> dict:
        return {"side": "floor", "outputs": ["out.bed.gz", "out.bed.gz.tbi"], "commands": [
            ("sort|bgzip", f"LC_ALL=C sort -t$'\\t' -k1,1 -k2,2n -S {M} --parallel={T} {bed} "
                           f"| bgzip -@{T} -l {level} > out.bed.gz"),
            ("tabix", "tabix -p bed out.bed.gz"),
        ]}

    def ours(route: tuple, source: Path, level: int) -> dict:
        return {"side": "ours", "route": list(route), "source": str(source), "level": level}

    cases = [
        ("(a) unsorted BAM -> BAM+BAI", ours(BAM_ROUTE, inputs.unsorted_bam, L), bam_floor(L)),
        ("(b) BED -> bgzip+TBI", ours(BED_ROUTE, inputs.bed, L), bed_floor(L)),
        ("(c) sorted BAM -> +BAI", ours(BAM_ROUTE, inputs.sorted_bam, L),
         {"side": "floor", "outputs": ["in.bam", "in.bam.bai"],
          "commands": [("index", f"ln -s {sbam} in.bam && samtools index -@{T} in.bam")]}),
    ]
    results = {}
    for title, mine, floor in cases:
        results[title] = b.compare(title, {**mine, "level": L}, {**floor, "level": L})

    # (d) our time-to-ready per level; the --level runs of (a) and (b) are reused.
    print("\n(d) compression levels (ours)", flush=True)
    levels: dict[tuple[str, int], list[Sample]] = {}
    for name, route, source, reuse in (("BED", BED_ROUTE, inputs.bed, cases[1][0]),
                                       ("BAM", BAM_ROUTE, inputs.unsorted_bam, cases[0][0])):
        for level in args.levels:
            if level == L:
                levels[name, level] = results[reuse][0]
                continue
            levels[name, level] = [b.measure(f"{name} L{level} #{i + 1}", ours(route, source, level))
                                   for i in range(args.repeat)]

    print_summary(args, results, levels, cases, b.pipelines_shas)


def print_summary(args: argparse.Namespace, results: dict, levels: dict, cases: list,
                  shas: set[str]) -> None:
    n = args.repeat
    what = "median of " + str(n) if n > 1 else "1 run each"
    print(f"\n=== Summary ({what}; --threads {args.threads} --sort-memory {args.sort_memory} "
          f"--level {args.level}; inputs ~{args.gb:g} GB) ===")
    header = (f"{'case':<30} {'ours s':>8} {'floor s':>8} {'ours/floor':>10} {'<=1.10':>6} "
              f"{'ours RSS':>10} {'floor RSS':>10} {'ours out':>11} {'floor out':>11}")
    print(header)
    print("-" * len(header))
    for title, _, _ in cases:
        mine, theirs = results[title]
        a, f = median_wall(mine), median_wall(theirs)
        ratio = f"{a / f:.2f}" if a and f else "-"
        verdict = "-" if not (a and f) else ("ok" if a / f <= 1.10 else "OVER")
        out_m = sum(x or 0 for x in mine[0].bytes) if not mine[0].error else None
        out_f = sum(x or 0 for x in theirs[0].bytes) if not theirs[0].error else None
        print(f"{title:<30} {fmt_s(a):>8} {fmt_s(f):>8} {ratio:>10} {verdict:>6} "
              f"{fmt_mib(peak_rss(mine)):>10} {fmt_mib(peak_rss(theirs)):>10} "
              f"{fmt_bytes(out_m):>11} {fmt_bytes(out_f):>11}")
    print("(RSS: peak of the largest single tool process; out: data + index bytes)")
    for title, _, _ in cases:
        for s in results[title][0] + results[title][1]:
            if s.error:
                print(f"  {title}: FAILED: {s.error}")
        if args.check:
            digests = {s.digest for s in results[title][0] + results[title][1]}
            if None not in digests:
                print(f"  {title}: records {'identical' if len(digests) == 1 else 'DIFFER'} "
                      f"(md5 {', '.join(sorted(digests))})")

    print(f"\n(d) time-to-ready by compression level (ours; {what})")
    header = f"{'input':<6} {'level':>5} {'ready s':>8} {'vs L6':>6} {'data bytes':>15} {'index bytes':>12} {'data vs L6':>10}"
    print(header)
    print("-" * len(header))
    for name in ("BED", "BAM"):
        base = levels.get((name, 6))
        base_t = median_wall(base) if base else None
        base_b = base[0].bytes[0] if base and not base[0].error else None
        for level in args.levels:
            samples = levels[name, level]
            t = median_wall(samples)
            data_b, index_b = [*samples[0].bytes, None, None][:2] if not samples[0].error else (None, None)
            print(f"{name:<6} {level:>5} {fmt_s(t):>8} "
                  f"{(f'{t / base_t:.2f}' if t and base_t else '-'):>6} "
                  f"{(f'{data_b:,}' if data_b else '-'):>15} {(f'{index_b:,}' if index_b else '-'):>12} "
                  f"{(f'{data_b / base_b:.2f}' if data_b and base_b else '-'):>10}")
            for s in samples:
                if s.error:
                    print(f"       FAILED: {s.error}")

    print("\nFloor commands (bash -o pipefail, cwd = a fresh work dir, TMPDIR = that dir, LC_ALL=C):")
    for title, _, floor in cases:
        print(f"  {title}:")
        for _, cmd in floor["commands"]:
            print(f"    {cmd}")
    print("Ours: cfdb_assets.pipelines.build_sorted(route, source, workdir, opts) then build_index(...)"
          " unless the sort wrote the index (index_kind_of; --always-build-index forces it),"
          f" route_for('format:2572','BAM') / route_for('format:3003','BED'), ToolOptions("
          f"{args.threads}, {args.sort_memory!r}, level)")
    print(f"pipelines.py sha256 seen by our measurements: {', '.join(sorted(shas)) or '-'}"
          + (" (CHANGED during the run!)" if len(shas) > 1 else ""))


if __name__ == "__main__":
    main()
