"""Request → ready through the real service (`make run`'s daemon + webserver + API, started by
tests/e2e/service.Service), against the command a skilled user would type.

Three modes:

    .venv/bin/python bench/request_to_ready.py [--cases bam,bed,bam-sorted,bed-sorted,vcf-sorted,vcf]
        [--sources file,https] [--gb 1.0] [--repeat 3] [--mbps 200] [--keep] [--json out.json]
        [--service-env CFDB_SORT_MEMORY=2G ...]
    .venv/bin/python bench/request_to_ready.py --small [--trials 5]
    .venv/bin/python bench/request_to_ready.py --idle 60 [--settle 30] [--trials 5]

Large files (default). Each case is a ~``--gb`` GB input (bench/r2r_inputs.py): ``bam`` unsorted
BAM, ``bam-sorted`` the same reads coordinate-sorted, ``bed`` unsorted narrowPeak-like BED, ``vcf``
unsorted sites-only VCF 4.2, ``bed-sorted`` / ``vcf-sorted`` those sorted exactly as
``LC_ALL=C sort -t$'\\t' -k1,1 -k2,2n`` outputs them (what "already sorted" means for the service's
text pipeline), and, on request only, ``vcf-hg38`` (sorted in hg38 contig order, as callers write
VCFs). Each is served from two sources: ``file://`` and ``https://127.0.0.1`` (a range-capable
static server in a subprocess, behind TLS with a self-signed certificate (tests/helpers.tls_served),
throttled to ``--mbps`` MB/s per connection; the service trusts it through REQUESTS_CA_BUNDLE and
may fetch from loopback through CFDB_ALLOW_HTTP_LOOPBACK=true). Per case and source, alternately
``--repeat`` times: ours, floor, ours, floor, ...

  ours   from the first GET /data/{dcc}/{id} (which must answer 202) until GET /files/{dcc}/{id}
         says ``ready`` (polled every 0.2 s). Every trial asks for a new catalog record whose md5 is
         right and whose cache key is new: the key derives from the content only, so each trial
         rewrites a one-record tail of the input (see bench/r2r_inputs.py); the catalog holding all
         trials' records is written before the service starts. A tiny BED is built first, untimed,
         so that no trial pays for the code server's first load.
  floor  the plain commands on the same bytes, with M = min(2G, MemAvailable/4) per thread, the
         service's threads and compression level:
           BAM      samtools sort -@T -m M -l L --write-index -o out.bam##idx##out.bam.bai in.bam
           BED      LC_ALL=C sort -t$'\\t' -k1,1 -k2,2n -S 2M --parallel=T in.bed
                      | bgzip -@T -l L > out.bed.gz && tabix -p bed out.bed.gz
           VCF      (grep '^#' in.vcf; grep -v '^#' in.vcf | LC_ALL=C sort ...) | bgzip ... && tabix -p vcf
         For https the floor first downloads the file with curl from the same throttled server.
         For the sorted cases the floor is the same full sort: so "ours/floor" of bed-sorted and
         vcf-sorted is the acceptance ratio "already-sorted request→ready ≤ 0.5× the unsorted floor".

Prints each trial as it ends, then one table of medians: case, source, ours s, floor s, ours/floor
(and, for sorted cases, ours against the floor of the unsorted case when it ran too); ``--json``
is rewritten after every trial, so a partial run keeps what it measured. Inputs are generated once
per run (and changed in place), or kept in .cfdb/bench/cache with ``--keep`` (then each is copied
once per run; bench/pipelines.py's cached BAM and BED are reused). Disk: the inputs (twice with
``--keep``) plus roughly one input's size of artifacts per "ours" trial.

``--small``: the median request→ready of cold small BED and SAM files (synthetic/small.py), each
trial a never-seen file, after one untimed warm-up.

``--idle N``: the service on the demo catalog, as `make run` starts it; after ``--settle`` s the CPU
time (utime+stime, with reaped children) of every process of run.sh's tree and process groups
(daemon, webserver, API, the Dagster code servers, runs) over N s, as "% of a core"; then, in the
same service, the ``--small`` medians (their files appended to the demo catalog, which the service
reloads).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.r2r_inputs import CASES, Case, TrialFile, prepare_input, text_sort  # noqa: E402
from resources.settings import Settings  # noqa: E402
from synthetic.demo import document  # noqa: E402
from synthetic.small import bed_text, sam_text  # noqa: E402
from tests.e2e.service import Service, free_port  # noqa: E402

DEFAULT_CASES = "bam,bed,bam-sorted,bed-sorted,vcf-sorted,vcf"
DCC = "encode"
POLL_S = 0.2
EXT = {"bam": "bam", "bed": "bed", "vcf": "vcf"}


# --------------------------------------------------------------------------- timing ours


class TrialFailed(RuntimeError):
    pass


def time_to_ready(service: Service, local_id: str, timeout: float) -> float:
    """Seconds from the first GET /data (202) until GET /files says ready."""
    with service.client() as client:
        started = time.monotonic()
        first = client.get(f"/data/{DCC}/{local_id}")
        if first.status_code != 202:
            raise TrialFailed(f"GET /data answered {first.status_code}, not 202: {first.text[:300]}")
        while time.monotonic() - started < timeout:
            time.sleep(POLL_S)
            body = client.get(f"/files/{DCC}/{local_id}").json()
            if body["state"] == "ready":
                return time.monotonic() - started
            if body["state"] == "failed":
                raise TrialFailed(f"job failed: {(body.get('job') or {}).get('error')}")
    raise TrialFailed(f"{local_id} not ready after {timeout:.0f} s")


# --------------------------------------------------------------------------- small files


def small_documents(sources: Path, trials: int) -> list[dict]:
    """Fresh small BED and SAM files (one extra BED: the warm-up) and their catalog records."""
    sources.mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(trials + 1):
        for kind, text, fmt in (("BED", bed_text, ("format:3003", "BED")),
                                ("SAM", sam_text, ("format:2573", "SAM"))):
            path = sources / f"BENCH{kind}{i}.{kind.lower()}"
            path.write_text(text(1000 + i))
            docs.append(document(DCC, f"BENCH{kind}{i}", path, fmt))
    return docs


def small_trials(service: Service, trials: int) -> dict[str, list[float]]:
    """Warm-up on the extra BED, then ``trials`` cold BEDs and SAMs; prints and returns the times."""
    time_to_ready(service, f"BENCHBED{trials}", 300)
    results = {}
    for kind in ("BED", "SAM"):
        times = [time_to_ready(service, f"BENCH{kind}{i}", 300) for i in range(trials)]
        results[kind] = times
        print(f"small {kind}: request -> ready median {statistics.median(times):.2f} s "
              f"(n={len(times)}, min {min(times):.2f}, max {max(times):.2f})", flush=True)
    return results


def run_small(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="r2r-small-") as tmp:
        root = Path(tmp)
        catalog = root / "catalog.jsonl"
        write_catalog(catalog, small_documents(root / "sources", args.trials))
        service = Service(root, {"CFDB_CATALOG": str(catalog), **args.service_env})
        service.start()
        try:
            return {"small": small_trials(service, args.trials)}
        finally:
            service.stop()


def write_catalog(path: Path, docs: list[dict]) -> None:
    """Replace ``path`` atomically (the service reloads a catalog whose mtime or size changed)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(d, sort_keys=True) + "\n" for d in docs))
    tmp.replace(path)


# --------------------------------------------------------------------------- idle CPU


def _proc_stats() -> dict[int, tuple[int, int, int, str]]:
    """pid → (ppid, pgid, utime+stime+cutime+cstime in ticks, name) of every process."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): ppid 4, pgrp 5, utime 14, stime 15, cutime 16, cstime 17
        stats[int(entry.name)] = (int(fields[1]), int(fields[2]), sum(map(int, fields[11:15])), name)
    return stats


def service_cpu(root_pid: int) -> dict[int, tuple[float, str]]:
    """CPU seconds (with reaped children) of run.sh's descendants and of their process groups."""
    stats = _proc_stats()
    members, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, s in stats.items() if s[0] == parent and pid not in members]
        members.update(children)
        frontier.extend(children)
    groups = {stats[pid][1] for pid in members if pid in stats}
    members |= {pid for pid, s in stats.items() if s[1] in groups}
    tick = os.sysconf("SC_CLK_TCK")
    return {pid: (stats[pid][2] / tick, _command(pid, stats[pid][3])) for pid in members if pid in stats}


def _command(pid: int, name: str) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    words = [Path(a.decode(errors="replace")).name for a in argv[:4] if a]
    return " ".join(words) or name


def measure_idle(service: Service, seconds: float) -> dict:
    before = service_cpu(service.proc.pid)
    started = time.monotonic()
    time.sleep(seconds)
    after = service_cpu(service.proc.pid)
    wall = time.monotonic() - started
    total = sum(cpu for cpu, _ in after.values()) - sum(cpu for cpu, _ in before.values())
    by_command: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for pid, (cpu, command) in after.items():
        by_command[command] += cpu - before.get(pid, (0.0, ""))[0]
        count[command] += 1
    percent = 100 * total / wall
    print(f"idle: {percent:.1f} % of a core ({total:.2f} CPU s over {wall:.0f} s, "
          f"{len(after)} processes)", flush=True)
    for command, cpu in by_command.most_common(6):
        print(f"    {100 * cpu / wall:5.1f} %  {command}" + (f" (x{count[command]})" if count[command] > 1 else ""),
              flush=True)
    return {"percent_of_a_core": percent, "cpu_s": total, "wall_s": wall,
            "by_command": {c: round(100 * v / wall, 2) for c, v in by_command.most_common()}}


def run_idle(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="r2r-idle-") as tmp:
        root = Path(tmp)
        service = Service(root, args.service_env)
        service.env.pop("CFDB_CATALOG", None)  # run.sh then writes and serves the demo catalog
        service.start()
        try:
            print(f"service up; settling {args.settle:g} s", flush=True)
            time.sleep(args.settle)
            idle = measure_idle(service, args.idle)
            demo = service.data_dir / "demo" / "catalog.jsonl"
            docs = [json.loads(line) for line in demo.read_text().splitlines() if line.strip()]
            write_catalog(demo, docs + small_documents(root / "small", args.trials))
            wait_listed(service, f"BENCHBED{args.trials}")
            return {"idle": idle, "small": small_trials(service, args.trials)}
        finally:
            service.stop()


def wait_listed(service: Service, local_id: str, timeout: float = 120) -> None:
    """Until the API's catalog (reloaded in the background) knows ``local_id``."""
    deadline = time.monotonic() + timeout
    with service.client() as client:
        while client.get(f"/files/{DCC}/{local_id}").status_code == 404:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not reload its catalog in {timeout} s")
            time.sleep(0.5)


# --------------------------------------------------------------------------- https source


class ThrottledFiles(BaseHTTPRequestHandler):
    """GET/HEAD of the files in ``server.root``, with single byte ranges, at ``server.rate`` B/s
    per connection."""

    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bool) -> None:
        path = self.server.root / Path(unquote(urlsplit(self.path).path)).name
        if not path.is_file():
            self._empty(404)
            return
        size = path.stat().st_size
        span = _range(self.headers.get("Range"), size)
        if span == "unsatisfiable":
            self._empty(416, {"Content-Range": f"bytes */{size}"})
            return
        start, end = span or (0, size)
        self.send_response(206 if span else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if body:
            with open(path, "rb") as fh:
                self._stream(fh, start, end - start)

    def _empty(self, status: int, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _stream(self, fh, start: int, length: int) -> None:
        fh.seek(start)
        began, sent = time.monotonic(), 0
        try:
            while sent < length:
                chunk = fh.read(min(1 << 20, length - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
                ahead = sent / self.server.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _range(header: str | None, size: int):
    """(start, end) of a single ``bytes=`` range, None for none, or "unsatisfiable"."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    if not first:
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    return (start, end) if start < end else "unsatisfiable"


def serve(root: str, port: int, certs: str, mbps: float) -> None:
    """The ``_serve`` subprocess: serve ``root`` over TLS until stdin closes."""
    from tests.helpers import tls_served

    server = ThreadingHTTPServer(("127.0.0.1", port), ThrottledFiles)
    server.daemon_threads = True
    server.root, server.rate = Path(root), mbps * 1e6
    with tls_served(server, Path(certs)):
        print("ready", flush=True)
        sys.stdin.read()


class HttpsSource:
    """The ``_serve`` subprocess over ``root``: its base URL and certificate."""

    def __init__(self, root: Path, certs: Path, mbps: float):
        certs.mkdir(parents=True, exist_ok=True)
        self.port, self.cert = free_port(), certs / "cert.pem"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_serve", str(root), str(self.port), str(certs), str(mbps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the https file server did not start")
        self.url = f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------- large files


@dataclass
class Trial:
    case: str
    source: str
    side: str  # ours | floor
    n: int
    seconds: float | None
    error: str | None = None


def floor_memory_mib() -> int:
    """M: min(2 GiB, MemAvailable / 4), per thread."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available_kib = int(meminfo["MemAvailable"].split()[0])
    return min(2048, available_kib // 1024 // 4)


def floor_command(kind: str, source: str, threads: int, memory_mib: int, level: int) -> str:
    if kind == "bam":
        return (f"samtools sort -@{threads} -m {memory_mib}M -l {level} --write-index "
                f"-o out.bam##idx##out.bam.bai {source}")
    sort = text_sort(kind, source, f"{2 * memory_mib}M", threads)
    return f"{sort} | bgzip -@{threads} -l {level} > out.{kind}.gz && tabix -p {kind} out.{kind}.gz"


class LargeBench:
    def __init__(self, args: argparse.Namespace, run_dir: Path):
        self.args, self.run_dir = args, run_dir
        settings = Settings.from_environ({**os.environ, **args.service_env})
        self.threads, self.level = settings.threads, settings.compression_level
        self.memory_mib = floor_memory_mib()
        self.cases = [CASES[name] for name in args.cases]
        self.trials: list[Trial] = []
        self.files: dict[str, TrialFile] = {}
        self.https: HttpsSource | None = None
        self.service: Service | None = None

    # -- setup

    def prepare(self) -> None:
        cache = self.args.cache_dir if self.args.keep else self.run_dir / "inputs"
        work = self.run_dir / "work"
        work.mkdir(parents=True)
        for case in self.cases:
            started = time.monotonic()
            source = prepare_input(case, cache, self.args.gb, self.args.seed, self.memory_mib, self.threads)
            copy = work / f"{case.name}.{EXT[case.kind]}"
            self.files[case.name] = TrialFile(case.kind, source, copy if self.args.keep else source)
            print(f"  {case.name:<11} {source} ({source.stat().st_size / 1e6:,.0f} MB; "
                  f"{time.monotonic() - started:.0f} s)", flush=True)
        if "https" in self.args.sources:
            served = work if self.args.keep else cache
            self.https = HttpsSource(served, self.run_dir / "tls", self.args.mbps)

    def url(self, case: Case, source: str) -> str:
        path = self.files[case.name].path
        return path.as_uri() if source == "file" else f"{self.https.url}/{path.name}"

    def local_id(self, case: Case, source: str, n: int) -> str:
        return f"R2R-{case.name}-{source}-{n}".upper()

    def tag(self, case: Case, source: str, n: int) -> str:
        return f"{case.name}-{source}-{n}"

    def catalog(self) -> Path:
        stub = self.run_dir / "warmup.bed"
        stub.write_text(bed_text(7))
        docs = [document(DCC, "R2R-WARMUP", stub, ("format:3003", "BED"))]
        for case in self.cases:
            for source in self.args.sources:
                for n in range(1, self.args.repeat + 1):
                    md5, size = self.files[case.name].digest(self.tag(case, source, n))
                    path = self.files[case.name].path
                    docs.append(document(DCC, self.local_id(case, source, n), stub, case.fmt, md5=md5,
                                         sha256=None, size_in_bytes=size, filename=path.name,
                                         access_url=self.url(case, source)))
        catalog = self.run_dir / "catalog.jsonl"
        write_catalog(catalog, docs)
        return catalog

    def start_service(self) -> None:
        env = {"CFDB_CATALOG": str(self.catalog()), "CFDB_ALLOW_HTTP_LOOPBACK": "true",
               **self.args.service_env}
        if self.https:
            env["REQUESTS_CA_BUNDLE"] = str(self.https.cert)
        self.service = Service(self.run_dir / "service", env)
        self.service.root.mkdir()
        self.service.start()
        time_to_ready(self.service, "R2R-WARMUP", 600)

    # -- measuring

    def ours(self, case: Case, source: str, n: int) -> float:
        self.files[case.name].use(self.tag(case, source, n))
        os.sync()
        return time_to_ready(self.service, self.local_id(case, source, n), self.args.timeout)

    def floor(self, case: Case, source: str) -> float:
        workdir = Path(tempfile.mkdtemp(prefix="floor-", dir=self.run_dir))
        name = f"in.{EXT[case.kind]}"
        if source == "file":
            cmd = floor_command(case.kind, shlex.quote(str(self.files[case.name].path)),
                                self.threads, self.memory_mib, self.level)
        else:
            cmd = (f"curl -sS --fail --cacert {shlex.quote(str(self.https.cert))} -o {name} "
                   f"{shlex.quote(self.url(case, source))} && "
                   + floor_command(case.kind, name, self.threads, self.memory_mib, self.level))
        os.sync()
        try:
            started = time.monotonic()
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=workdir,
                                  env={**os.environ, "LC_ALL": "C", "TMPDIR": str(workdir)},
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, errors="replace")
            seconds = time.monotonic() - started
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if proc.returncode:
            raise TrialFailed(f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
        return seconds

    def trial(self, case: Case, source: str, side: str, n: int) -> None:
        try:
            seconds = self.ours(case, source, n) if side == "ours" else self.floor(case, source)
            trial = Trial(case.name, source, side, n, seconds)
            print(f"  {case.name:<11} {source:<5} {side:<5} #{n}: {seconds:7.1f} s", flush=True)
        except (TrialFailed, httpx.HTTPError) as exc:
            trial = Trial(case.name, source, side, n, None, str(exc))
            print(f"  {case.name:<11} {source:<5} {side:<5} #{n}: FAILED: {exc}", flush=True)
        self.trials.append(trial)
        if self.args.json:  # after every trial: a partial run keeps what it measured
            self.args.json.write_text(json.dumps(self.results(), indent=2) + "\n")

    def run(self) -> None:
        for case in self.cases:
            for source in self.args.sources:
                for n in range(1, self.args.repeat + 1):
                    self.trial(case, source, "ours", n)
                    self.trial(case, source, "floor", n)

    def close(self) -> None:
        if self.service:
            self.service.stop()
        if self.https:
            self.https.close()

    # -- reporting

    def results(self) -> dict:
        return {"trials": [asdict(t) for t in self.trials], "summary": self.summary(),
                "floor": {"memory_mib": self.memory_mib, "threads": self.threads, "level": self.level},
                "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.args).items()}}

    def median(self, case: str, source: str, side: str) -> float | None:
        times = [t.seconds for t in self.trials if (t.case, t.source, t.side) == (case, source, side)]
        return statistics.median(times) if times and None not in times else None

    def summary(self) -> list[dict]:
        rows = []
        for case in self.cases:
            for source in self.args.sources:
                ours, floor = self.median(case.name, source, "ours"), self.median(case.name, source, "floor")
                twin = self.median(case.kind, source, "floor") if case.sorted else None
                rows.append({"case": case.name, "source": source, "ours_s": ours, "floor_s": floor,
                             "ratio": ours / floor if ours and floor else None,
                             "vs_unsorted_floor": ours / twin if ours and twin else None,
                             # The acceptance is against the unsorted file's floor when it ran too.
                             "acceptance": _verdict(case, ours, twin or floor)})
        return rows

    def print_table(self, rows: list[dict]) -> None:
        print(f"\n=== request -> ready, medians of {self.args.repeat} (~{self.args.gb:g} GB inputs; "
              f"floor M={self.memory_mib}M/thread, -@{self.threads}, level {self.level}; "
              f"https at {self.args.mbps:g} MB/s) ===")
        header = (f"{'case':<11} {'source':<6} {'ours s':>8} {'floor s':>8} {'ours/floor':>10} "
                  f"{'vs unsorted floor':>17} {'sorted <= 0.5x':>14}")
        print(header)
        print("-" * len(header))
        for r in rows:
            print(f"{r['case']:<11} {r['source']:<6} {_s(r['ours_s']):>8} {_s(r['floor_s']):>8} "
                  f"{_x(r['ratio']):>10} {_x(r['vs_unsorted_floor']):>17} {r['acceptance']:>14}")
        for t in self.trials:
            if t.error:
                print(f"  FAILED {t.case} {t.source} {t.side} #{t.n}: {t.error}")
        print("floor commands (file source; https: curl -o in.X first):")
        for kind in sorted({c.kind for c in self.cases}):
            print(f"  {kind}: {floor_command(kind, f'in.{kind}', self.threads, self.memory_mib, self.level)}")
        sys.stdout.flush()


def _verdict(case: Case, ours: float | None, floor: float | None) -> str:
    if not case.sorted or case.kind == "bam":
        return ""
    if not (ours and floor):
        return "-"
    return "ok" if ours <= 0.5 * floor else "OVER"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def check_disk(args: argparse.Namespace) -> None:
    """Warn when the inputs (and their trial copies with --keep) and ~1x of artifacts per trial may
    not fit."""
    inputs = len(args.cases) * (2 if args.keep else 1)
    need = args.gb * (inputs + len(args.cases) * len(args.sources) * args.repeat)
    free = shutil.disk_usage(args.workdir).free / 1e9
    if free < need:
        print(f"WARNING: ~{need:.0f} GB may be needed under {args.workdir}; {free:.0f} GB free", flush=True)


def run_large(args: argparse.Namespace) -> dict:
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="r2r-", dir=args.workdir))
    bench = LargeBench(args, run_dir)
    try:
        print(f"request -> ready bench  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; "
              f"{os.cpu_count()} cores; cases {','.join(args.cases)}; sources {','.join(args.sources)}; "
              f"--gb {args.gb:g} --repeat {args.repeat} --mbps {args.mbps:g}; "
              f"service env {args.service_env or 'defaults'}\ninputs:", flush=True)
        check_disk(args)
        bench.prepare()
        bench.start_service()
        print("service up, warm-up built; trials:", flush=True)
        bench.run()
    finally:
        bench.close()
        bench.print_table(bench.summary())
        shutil.rmtree(run_dir, ignore_errors=True)
    return bench.results()


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--small", action="store_true", help="median request->ready of cold small BED/SAM")
    mode.add_argument("--idle", type=float, metavar="S", help="service CPU over S seconds, then --small")
    parser.add_argument("--trials", type=int, default=5, help="--small/--idle: files of each kind")
    parser.add_argument("--settle", type=float, default=30, help="--idle: seconds before measuring")
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"of {','.join(CASES)}")
    parser.add_argument("--sources", default="file,https")
    parser.add_argument("--gb", type=float, default=1.0, help="size of each input, GB (10^9 bytes)")
    parser.add_argument("--repeat", type=int, default=3, help="ours/floor pairs per case and source")
    parser.add_argument("--mbps", type=float, default=200, help="https throttle, MB/s per connection")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a trial fails")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="cache the inputs in --cache-dir")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cfdb" / "bench" / "cache")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cfdb" / "bench",
                        help="where the run's temp dir goes (same filesystem as --cache-dir)")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment override for the service (repeatable)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if unknown := [c for c in args.cases if c not in CASES] + [s for s in args.sources if s not in ("file", "https")]:
        parser.error(f"unknown case or source: {', '.join(unknown)}")
    if args.repeat < 1 or args.trials < 1 or args.gb <= 0 or args.mbps <= 0:
        parser.error("--repeat, --trials, --gb and --mbps must be positive")
    try:
        args.service_env = dict(item.split("=", 1) for item in args.service_env)
    except ValueError:
        parser.error("--service-env takes NAME=VALUE")
    return args


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "_serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
        return
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop the service
    if args.small:
        results = run_small(args)
    elif args.idle is not None:
        results = run_idle(args)
    else:
        results = run_large(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
