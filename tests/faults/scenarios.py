"""The fault scenarios, each against a running service, each returning an ``Outcome`` (what was
injected, what the jobs became, how long recovery took, what was seen meanwhile). The tests assert
on it; ``bench/faults.py`` prints it as a table. Every loop is bounded in count and time; every
address is loopback.

The stacks (``postgres_stack``, ``sqlite_stack``) are the real service (`scripts/run.sh`, through
``tests.e2e.service.Service``) on a catalog made for the scenarios: the Postgres one reaches its
ledger through a ``TcpProxy``, the SQLite one keeps its ledger on a tiny tmpfs of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from synthetic.small import bed_text, vcf_text
from tests.e2e.service import Service, alive
from tests.faults.harness import (
    BED,
    POSTGRES_URL,
    CSV,
    TERMINAL,
    VCF,
    Ballast,
    CatalogWriter,
    ConnectionCounter,
    FaultCatalog,
    TcpProxy,
    ledger_rows,
    pg_schema,
    pg_url,
    processes,
    proxied_ledger_url,
    request,
    services,
    snapshot,
    tmpfs,
    under,
    wait_terminal,
)
from tests.helpers import wait_until

OUTAGE_S = 20.0
ORIGIN = "https://designer.example.org"  # any browser origin: the answer must carry CORS for it
# Bounds for a busy 2-core machine (the whole suite may run beside the service).
START_WAIT_S = 240.0  # for a first job to finish / a run to start
RECOVER_S = 300.0  # for every job to end after a fault is cleared


@dataclass
class Outcome:
    """What one injected fault did. ``expect``: every job ``completed`` (the service recovered), or
    every job ``failed`` with a sentence (bad input refused), or ``none`` (no jobs: HTTP checks)."""

    fault: str
    expect: str
    bodies: dict[str, dict] = field(default_factory=dict)  # job_id -> the last /jobs body
    job_ids: list[str] = field(default_factory=list)
    recover_s: float | None = None
    problems: list[str] = field(default_factory=list)  # what contradicts survival, in sentences
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def completed(self) -> list[str]:
        return [j for j in self.job_ids if self.bodies.get(j, {}).get("status") == "completed"]

    @property
    def failed(self) -> dict[str, str]:
        return {j: self.bodies[j].get("error") or "" for j in self.job_ids
                if self.bodies.get(j, {}).get("status") == "failed"}

    @property
    def stuck(self) -> dict[str, str]:
        return {j: self.bodies.get(j, {}).get("status", "unknown") for j in self.job_ids
                if self.bodies.get(j, {}).get("status") not in TERMINAL}

    @property
    def survived(self) -> bool:
        if self.problems or self.stuck:
            return False
        if self.expect == "completed":
            return len(self.completed) == len(self.job_ids)
        if self.expect == "failed":
            return len(self.failed) == len(self.job_ids)
        return True


# --- the stacks ----------------------------------------------------------------------------------


@dataclass
class Stack:
    service: Service
    catalog: FaultCatalog
    ledger_url: str  # the service's CFDB_LEDGER_URL
    observe_url: str  # how the scenarios read the ledger: never through the fault
    proxy: TcpProxy | None = None
    counter: ConnectionCounter | None = None
    ledger_dir: Path | None = None


def postgres_catalog(root: Path, counter_port: int, daemon_modes: tuple[str, ...] = ("runs",)) -> FaultCatalog:
    """Sources for every scenario the Postgres stack runs (distinct seeds: distinct cache keys)."""
    writer = CatalogWriter(root)
    writer.intervals("outage", "PGO", 10, seed=9100)
    writer.intervals("miss", "PGM", 1, seed=9200)
    for k, mode in enumerate(daemon_modes):  # a large file (a run that outlives the kill), 3 small
        writer.large_bed(f"daemon_{mode}", f"ENCFFD{mode.upper()}BIG", megabytes=100, seed=9350 + k)
        writer.intervals(f"daemon_{mode}", f"D{mode.upper()}", 3, seed=9300 + 10 * k)
    writer.large_bed("worker", "ENCFFBIG001", megabytes=60, seed=9400)
    garbage_sources(writer)
    ssrf_sources(writer, counter_port)
    return writer.write()


def sqlite_catalog(root: Path) -> FaultCatalog:
    writer = CatalogWriter(root)
    writer.intervals("outage", "SQO", 8, seed=9500)
    writer.intervals("miss", "SQM", 1, seed=9600)
    return writer.write()


@contextlib.contextmanager
def postgres_stack(root: Path, daemon_modes: tuple[str, ...] = ("runs",)) -> Iterator[Stack]:
    """The service with its ledger in a throwaway Postgres schema, reached through a TcpProxy."""
    target = pg_url(POSTGRES_URL)
    with pg_schema() as schema, TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy, \
            ConnectionCounter() as counter:
        catalog = postgres_catalog(root / "catalog", counter.port, daemon_modes)
        url = proxied_ledger_url(proxy.port, schema)
        service = Service(root, {"CFDB_CATALOG": str(catalog.path), "CFDB_LEDGER_URL": url})
        service.start()
        try:
            yield Stack(service, catalog, url, proxied_ledger_url(None, schema), proxy=proxy, counter=counter)
        finally:
            service.stop()
            _reap(service)
            _drop_bulk(service)


@contextlib.contextmanager
def sqlite_stack(root: Path, size: str = "16m") -> Iterator[Stack]:
    """The service with its SQLite ledger alone on a tmpfs of ``size``."""
    catalog = sqlite_catalog(root / "catalog")
    with tmpfs(root / "ledger-fs", size) as mount:
        url = f"sqlite:///{mount / 'ledger.db'}"
        service = Service(root, {"CFDB_CATALOG": str(catalog.path), "CFDB_LEDGER_URL": url})
        service.start()
        try:
            yield Stack(service, catalog, url, url, ledger_dir=mount)
        finally:
            service.stop()
            _reap(service)
            _drop_bulk(service)


def _drop_bulk(service: Service) -> None:
    """The sources, artifacts and scratch (~200 MB) go; the logs stay, for a failure's post-mortem."""
    for bulky in (service.root / "catalog", service.data_dir / "artifacts", service.data_dir / "work"):
        shutil.rmtree(bulky, ignore_errors=True)


def _reap(service: Service) -> None:
    """Whatever run.sh's groups left behind (a killed daemon's orphans), by the service's own paths:
    processes whose command line or working directory names this service's root."""
    root = str(service.root)
    for proc in processes().values():
        if proc.pid != os.getpid() and (root in proc.cmdline or proc.cwd.startswith(root)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)


# --- 1, 2: ledger outages ------------------------------------------------------------------------


class PostgresDown:
    name = "ledger outage: Postgres connections refused"

    def __init__(self, proxy: TcpProxy):
        self.proxy = proxy

    def start(self) -> None:
        self.proxy.down()

    def stop(self) -> None:
        self.proxy.up()


class DiskFull:
    name = "ledger outage: SQLite filesystem full"

    def __init__(self, directory: Path):
        self.ballast = Ballast(directory)

    def start(self) -> None:
        self.ballast.fill()

    def stop(self) -> None:
        self.ballast.free()


def ledger_outage(stack: Stack, fault, outage_s: float = OUTAGE_S) -> Outcome:
    """Request every ``outage`` file; once one is ready (a hit to serve) inject ``fault`` for
    ``outage_s`` while probing the API (hits, a never-requested miss, /jobs, /files), clear it, and
    wait for every job to end with no further request."""
    service = stack.service
    ids, miss = stack.catalog.groups["outage"], stack.catalog.groups["miss"][0]
    out = Outcome(f"{fault.name} for {outage_s:.0f} s", "completed")
    with service.client() as client:
        jobs = {request(client, local_id): local_id for local_id in ids}
    out.job_ids = list(jobs)

    def first_ready() -> str | None:
        done = [j for j, b in snapshot(service, out.job_ids).items() if b["status"] == "completed"]
        return jobs[done[0]] if done else None

    hit = wait_until(first_ready, "a first job completed", START_WAIT_S, every_s=1)
    before = snapshot(service, out.job_ids)
    out.notes["in flight at the fault"] = sum(1 for b in before.values() if b["status"] not in TERMINAL)
    if not out.notes["in flight at the fault"]:
        out.problems.append("every job had ended before the fault began: nothing was in flight")

    probes: Counter[str] = Counter()
    fault.start()
    started = time.monotonic()
    try:
        with service.client() as client:
            pending = [j for j in out.job_ids if before.get(j, {}).get("status") not in TERMINAL]
            while time.monotonic() - started < outage_s:
                for kind, method, path in (
                    ("hit", "GET", f"/data/encode/{hit}"),
                    ("miss", "GET", f"/data/encode/{miss}"),
                    ("jobs", "GET", f"/jobs/{pending[0]}" if pending else f"/jobs/{out.job_ids[0]}"),
                    ("files", "GET", f"/files/encode/{jobs[pending[0]] if pending else hit}"),
                ):
                    try:
                        response = client.request(method, path, timeout=10)
                    except httpx.HTTPError as exc:
                        probes[f"{kind} {type(exc).__name__}"] += 1
                        continue
                    probes[f"{kind} {response.status_code}"] += 1
                    if kind == "miss" and response.status_code == 202:
                        # The fault let this write through (SQLite reuses its WAL's space): track it too.
                        job_id = response.json()["job_id"]
                        if job_id not in jobs:
                            jobs[job_id] = miss
                            out.job_ids.append(job_id)
                time.sleep(1)
    finally:
        fault.stop()
    cleared = time.monotonic()
    out.notes["probes during the outage"] = dict(sorted(probes.items()))
    out.bodies = wait_terminal(service, out.job_ids, timeout=RECOVER_S)
    if not out.stuck:
        out.recover_s = round(time.monotonic() - cleared, 1)

    if any(key.endswith(" 500") for key in probes):
        out.problems.append(f"the API answered 500 during the outage: {dict(probes)}")
    if probes["hit 200"] == 0 or any(k.startswith("hit ") and k != "hit 200" for k in probes):
        out.problems.append(f"hits were not all served during the outage: {dict(probes)}")
    if any(k.startswith("miss ") and k not in ("miss 503", "miss 202") for k in probes):
        out.problems.append(f"misses answered something other than 503 during the outage: {dict(probes)}")
    rows = ledger_rows(stack.observe_url, out.job_ids)
    out.notes["attempts"] = dict(sorted(Counter(r["attempt"] for r in rows.values()).items()))
    active = {j: r["state"] for j, r in rows.items() if r["state"] not in ("succeeded", "failed")}
    if active:
        out.problems.append(f"jobs still active in the ledger: {active}")
    return out


# --- 3: the daemon killed ------------------------------------------------------------------------


DAEMON_MODES = {
    # mode: when the small files are requested, relative to the kill
    "runs": "mid-run, its other runs queued",  # before: the kill comes once each has a Dagster run
    "down": "mid-run, files requested while it is down",  # just after the kill
    "tick": "between a tick's requests and its runs",  # the kill comes once one is `requested`
}
TICK_DELAY_S = 0.3  # the ledger's answers held back meanwhile, so the tick outlives the daemon


def daemon_killed(stack: Stack, mode: str = "runs") -> Outcome:
    """Request the large ``daemon_<mode>`` file; once its run is in flight, kill -9 the daemon
    (run.sh restarts it); the small files are requested as ``mode`` says (``DAEMON_MODES``). Every
    job must end completed with no further request (only /jobs is polled).

    ``down`` and ``tick`` meet the window the on-demand sensor leaves: it marks jobs ``requested``
    inside its evaluation, in the code server, which outlives a killed daemon and finishes the
    evaluation whose runs the dead daemon will never create; the reconciler asks for them again only
    after ``Policy.request_grace_s``. ``tick`` hits it every time: the ledger's answers are held
    back ``TICK_DELAY_S`` by the proxy, so the daemon is killed after the tick's ``requested`` is
    committed and before the tick's answer can reach it."""
    service = stack.service
    large, *small = stack.catalog.groups[f"daemon_{mode}"]
    out = Outcome(f"daemon killed (-9) {DAEMON_MODES[mode]}; run.sh restarts it", "completed")
    with service.client() as client, dg_instance(service) as instance:
        out.job_ids = [request(client, large)]

        def running() -> bool:
            return snapshot(service, out.job_ids).get(out.job_ids[0], {}).get("status") == "running"

        wait_until(running, "the large file's run in flight", START_WAIT_S, every_s=0.3)
        if mode == "tick" and stack.proxy is not None:
            stack.proxy.delay_s = TICK_DELAY_S
        try:
            if mode in ("runs", "tick"):
                with ThreadPoolExecutor(len(small)) as pool:  # in parallel: each is slow in tick mode
                    out.job_ids += list(pool.map(lambda local_id: request(client, local_id), small))

                def ready_to_kill() -> bool:
                    if mode == "tick":
                        rows = ledger_rows(stack.observe_url, out.job_ids[1:])
                        return any(r["state"] != "queued" for r in rows.values())
                    return len(_first_runs(instance, out.job_ids[1:])) == len(small)

                wait_until(ready_to_kill, f"the {mode} moment", START_WAIT_S,
                           every_s=0.05 if mode == "tick" else 0.3)
            old = services(service.proc.pid)["daemon"]
            rows = ledger_rows(stack.observe_url, out.job_ids)
            out.notes["ledger at the kill"] = dict(Counter(r["state"] for r in rows.values()))
            os.kill(old, signal.SIGKILL)
            killed, killed_at = time.monotonic(), time.time()
        finally:
            if stack.proxy is not None:
                stack.proxy.delay_s = 0.0
        if mode == "down":
            out.job_ids += [request(client, local_id) for local_id in small]
        line = f"daemon (pid {old}) exited with status 137"

        def restarted() -> int | None:
            pid = services(service.proc.pid).get("daemon")
            return pid if pid and pid != old and line in service.log.read_text() else None

        new = wait_until(restarted, "run.sh restarting the daemon", 60)
        out.notes["daemon pids"] = f"{old} -> {new}"
        out.bodies = wait_terminal(service, out.job_ids, timeout=RECOVER_S)
        if not out.stuck:
            out.recover_s = round(time.monotonic() - killed, 1)
        rows = ledger_rows(stack.observe_url, out.job_ids)
        out.notes["attempts"] = dict(sorted(Counter(r["attempt"] for r in rows.values()).items()))
        first = _first_runs(instance, out.job_ids[1:])
        out.notes["small files' first runs created after the kill (s)"] = sorted(
            round(t - killed_at, 1) for t in first.values())
    return out


@contextlib.contextmanager
def dg_instance(service: Service):
    """The service's Dagster instance, read from this process (its storage is SQLite files)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(service.dagster_home)) as instance:
        yield instance


def _first_runs(instance, job_ids: list[str]) -> dict[str, float]:
    """When each job's first Dagster run was created (epoch seconds), for the jobs that have one."""
    import dagster as dg

    first: dict[str, float] = {}
    for record in instance.get_run_records(dg.RunsFilter(tags={"cfdb/job_id": job_ids})):
        job_id = record.dagster_run.tags.get("cfdb/job_id")
        created = record.create_timestamp.timestamp()
        first[job_id] = min(first.get(job_id, created), created)
    return first


# --- 4: a run worker SIGKILLed mid-pipeline ------------------------------------------------------

TOOLS = ("sort", "bgzip", "grep", "cat", "samtools", "tabix")


def worker_killed(stack: Stack, grace_s: float = 5.0) -> Outcome:
    """Request the large BED; once its pipeline's tools run, SIGKILL the run worker. Then: no tool
    process alive ``grace_s`` later, the job completes on the automatic retry (same job id), and
    the killed run's scratch directory is gone."""
    service = stack.service
    local_id = stack.catalog.groups["worker"][0]
    work = service.data_dir / "work"
    out = Outcome("run worker SIGKILLed mid-pipeline", "completed")
    with service.client() as client:
        job_id = request(client, local_id)
    out.job_ids = [job_id]

    def tools_running():
        procs = [p for p in under(work) if p.cmdline.split(" ")[0].rsplit("/", 1)[-1] in TOOLS]
        return procs or None

    tools = wait_until(tools_running, "the pipeline's tools running", START_WAIT_S, every_s=0.2)
    table = processes()
    scratch = Path(tools[0].cwd)
    group = tools[0].pgid  # the pipeline's own process group (bash, started in a new session)
    leader = table.get(group)
    worker = leader.ppid if leader else None  # setpriv execs bash: its parent is the run worker
    if worker is None or worker not in table:
        out.problems.append(f"no run worker found above the pipeline's group {group}")
        return out
    out.notes["worker"] = table[worker].cmdline[:80]
    victims = {p.pid: p.cmdline[:60] for p in table.values() if p.pgid == group or p.cwd.startswith(str(scratch))}
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(grace_s)
    left = {pid: cmd for pid, cmd in victims.items() if alive(pid)}
    out.notes["tool processes at the kill"] = len(victims)
    if left:
        out.problems.append(f"tool processes alive {grace_s:.0f} s after the worker was killed: {left}")
    errors: set[str] = set()
    out.bodies = wait_terminal(service, out.job_ids, timeout=RECOVER_S, errors=errors)
    if not out.stuck:
        out.recover_s = round(time.monotonic() - killed, 1)
    out.notes["errors shown before the retry succeeded"] = sorted(errors)
    rows = ledger_rows(stack.observe_url, out.job_ids)
    out.notes["attempt"] = rows.get(job_id, {}).get("attempt")
    if out.completed and rows.get(job_id, {}).get("attempt", 1) < 2:
        out.problems.append("the job completed without a retry: the kill did not fail its run")
    if scratch.exists():
        out.problems.append(f"the killed run's work directory {scratch.name} is still there")
    out.notes["scratch"] = f"{scratch.name} removed" if not scratch.exists() else f"{scratch.name} left"
    return out


# --- 5: unmatched routes and methods -------------------------------------------------------------

UNMATCHED = (
    ("GET", "/nope"),
    ("GET", "/data/encode"),
    ("POST", "/jobs/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/data/encode/ENCFF000BED"),
    ("PUT", "/files/encode/ENCFF000BED"),
    ("PATCH", "/artifacts/" + "0" * 64 + "/data.bam"),
)


def unmatched_routes(stack: Stack) -> Outcome:
    """Unknown paths and methods a route lacks: JSON bodies ({"detail": ...}) with CORS."""
    out = Outcome("unmatched routes and methods", "none")
    seen = {}
    with stack.service.client() as client:
        for method, path in UNMATCHED:
            response = client.request(method, path, headers={"Origin": ORIGIN})
            ctype = response.headers.get("content-type", "")
            cors = response.headers.get("access-control-allow-origin")
            seen[f"{method} {path}"] = response.status_code
            try:
                body = response.json()
            except ValueError:
                body = None
            if response.status_code not in (404, 405):
                out.problems.append(f"{method} {path} answered {response.status_code}, not 404/405")
            if not ctype.startswith("application/json") or not isinstance(body, dict) or not body.get("detail"):
                out.problems.append(f"{method} {path} answered {ctype or 'no type'}: {response.text[:80]!r}")
            if cors not in ("*", ORIGIN):
                out.problems.append(f"{method} {path} has no CORS header")
            if response.status_code == 405 and "allow" not in response.headers:
                out.problems.append(f"{method} {path}: a 405 without Allow")
    out.notes["answers"] = seen
    return out


# --- 6: garbage inputs ---------------------------------------------------------------------------

BAD_BED_LINE = 6  # 1-based, in the source file (after 4 header lines and one good record)


def _bad_bed() -> str:
    lines = bed_text(9700, 40).splitlines()
    assert sum(1 for line in lines[:BAD_BED_LINE - 1] if line.startswith(("browser", "track", "#"))) == 4
    fields = lines[BAD_BED_LINE - 1].split("\t")
    lines[BAD_BED_LINE - 1] = "\t".join([fields[0], "start", *fields[2:]])
    return "\n".join(lines) + "\n"


def _headless_vcf() -> tuple[str, int]:
    """A VCF whose ``##`` meta lines are followed by records with no ``#CHROM`` line, and the line
    number of its first record (the first bad line)."""
    lines = [line for line in vcf_text(9701, 40).splitlines() if not line.startswith("#CHROM")]
    return "\n".join(lines) + "\n", 1 + sum(1 for line in lines if line.startswith("##"))


def garbage_sources(writer: CatalogWriter) -> None:
    """A BED whose start column is not numeric on line ``BAD_BED_LINE``; a VCF without #CHROM."""
    writer.add("garbage", "ENCFFBADBED1", _bad_bed().encode(), BED, ".bed")
    writer.add("garbage", "ENCFFBADVCF1", _headless_vcf()[0].encode(), VCF, ".vcf")


def garbage_inputs(stack: Stack) -> Outcome:
    """Each bad file fails with a sentence that names the first bad line, and nothing is published."""
    bed, vcf = stack.catalog.groups["garbage"]
    cases = {bed: BAD_BED_LINE, vcf: _headless_vcf()[1]}
    out = Outcome("garbage inputs (BED start not a number; VCF without #CHROM)", "failed")
    service = stack.service
    with service.client() as client:
        jobs = {request(client, local_id): local_id for local_id in cases}
    out.job_ids = list(jobs)
    started = time.monotonic()
    out.bodies = wait_terminal(service, out.job_ids, timeout=RECOVER_S)
    out.recover_s = round(time.monotonic() - started, 1)
    with service.client() as client:
        for job_id, local_id in jobs.items():
            body = out.bodies.get(job_id, {})
            line = cases[local_id]
            error = body.get("error") or ""
            if body.get("status") != "failed":
                out.problems.append(f"{local_id} ended {body.get('status')!r}, not failed")
            elif not re.search(rf"\bline {line}\b", error, re.IGNORECASE):
                out.problems.append(f"{local_id}'s error does not name line {line}: {error!r}")
            info = client.get(f"/files/encode/{local_id}").json()
            if info.get("data_url") or info.get("state") == "ready":
                out.problems.append(f"{local_id} was published: {info}")
    return out


# --- 7: the SSRF guard ---------------------------------------------------------------------------

SSRF_CASES = {
    # local_id: (the access URL, from the counter's port; what the job's sentence must say)
    "ENCFFSSRF001": ("https://127.0.0.1:{port}/peaks.bed", r"loopback"),
    "ENCFFSSRF002": ("https://files.example.org/peaks.bed", r"not an allowed upstream.*CFDB_UPSTREAM_HOSTS"),
}
# Passthrough files (streamed by the API itself, no run): plain http and a loopback name.
SSRF_PROXIED = {
    "ENCFFSSRFCSV1": "http://127.0.0.1:{port}/table.csv",
    "ENCFFSSRFCSV2": "https://localhost:{port}/table.csv",
}


def ssrf_sources(writer: CatalogWriter, port: int) -> None:
    """Processed BEDs and passthrough CSVs whose access URLs point at loopback (the counter) or at
    a host outside the allowlist."""
    for i, (local_id, (url, _)) in enumerate(SSRF_CASES.items()):  # distinct bytes: one job each
        writer.add("ssrf", local_id, bed_text(9800 + i, 50).encode(), BED, ".bed", access_url=url.format(port=port))
    for local_id, url in SSRF_PROXIED.items():
        writer.add("ssrf_proxy", local_id, b"a,b\n1,2\n", CSV, ".csv", access_url=url.format(port=port))


def ssrf_refused(stack: Stack) -> Outcome:
    """Loopback and unlisted upstreams are refused before any connection: by the runs (the job
    fails with a sentence) and by the API's passthrough proxy (a JSON error), with the counter
    having accepted nothing."""
    assert stack.counter is not None
    service, counter = stack.service, stack.counter
    out = Outcome("SSRF: access URLs to 127.0.0.1 / localhost / an unlisted host", "failed")
    before = counter.connections
    with service.client() as client:
        jobs = {request(client, local_id): local_id for local_id in SSRF_CASES}
        proxied = {local_id: client.get(f"/data/encode/{local_id}", headers={"Origin": ORIGIN})
                   for local_id in SSRF_PROXIED}
    out.job_ids = list(jobs)
    started = time.monotonic()
    out.bodies = wait_terminal(service, out.job_ids, timeout=RECOVER_S)
    out.recover_s = round(time.monotonic() - started, 1)
    for job_id, local_id in jobs.items():
        body = out.bodies.get(job_id, {})
        words = SSRF_CASES[local_id][1]
        if body.get("status") != "failed":
            out.problems.append(f"{local_id} ended {body.get('status')!r}, not failed")
        elif not re.search(words, body.get("error") or "", re.IGNORECASE):
            out.problems.append(f"{local_id}'s error does not say why ({words}): {body.get('error')!r}")
    for local_id, response in proxied.items():
        out.notes[f"proxy {local_id}"] = f"{response.status_code} {response.text[:160]}"
        if response.status_code < 400 or not response.headers.get("content-type", "").startswith("application/json"):
            out.problems.append(f"the passthrough of {local_id} (loopback) answered {response.status_code}: "
                                f"{response.text[:100]!r}")
    out.notes["connections reached the loopback server"] = counter.connections - before
    if counter.connections != before:
        out.problems.append(f"{counter.connections - before} connection(s) reached the loopback server")
    return out
