"""The fault kit: real faults for real processes (no mocks), shared by ``tests/faults`` and
``bench/faults.py``.

- ``TcpProxy``: a TCP proxy on loopback in front of the real Postgres; ``down()`` closes every
  connection and the listener (new connections are refused), ``up()`` listens again on the port.
- ``tmpfs`` and ``Ballast``: a tiny filesystem of its own for the SQLite ledger, and a file that
  fills it to the last byte (and is removed to free it).
- ``ConnectionCounter``: an HTTP-ish server on loopback that counts every connection it accepts
  (the SSRF guard must refuse before any).
- Processes from ``/proc``: run.sh's services, run workers and their tool processes.
- ``FaultCatalog``: the demo catalog plus sources of our own (fresh seeds, so fresh cache keys).
- Bounded polling of ``/jobs`` and a direct look at the ledger's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from synthetic.demo import document, write_demo
from synthetic.large import bed_chunk
from synthetic.small import bed_text, sam_text, vcf_text
from tests.e2e.service import Service

POSTGRES_URL = os.environ.get("CFDB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TERMINAL = ("completed", "failed")
BED = ("format:3003", "BED")
SAM = ("format:2573", "SAM")
VCF = ("format:3016", "VCF")
NARROWPEAK = ("format:3613", "NarrowPeak")
CSV = ("format:3752", "CSV")


# --- the ledger's Postgres behind a proxy -------------------------------------------------------


def pg_url(url: str | sa.URL) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; we ship psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A throwaway schema on the test server, dropped (with everything in it) afterwards."""
    name = f"cfdb_faults_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url(POSTGRES_URL))
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        yield name
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError), admin.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # never hang on a leftover session
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def proxied_ledger_url(proxy_port: int | None, schema: str) -> str:
    """CFDB_LEDGER_URL: the test server's database through the proxy (None: directly), in ``schema``."""
    url = pg_url(POSTGRES_URL).set(drivername="postgresql")
    if proxy_port is not None:
        url = url.set(host="127.0.0.1", port=proxy_port)
    return f"{url.render_as_string(hide_password=False)}?options=-csearch_path%3D{schema}"


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (an asyncio loop in a thread of its own).
    ``delay_s`` holds back every chunk the target sends (a slow database: each query's answer is
    late, while its effect is already committed)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self.delay_s = 0.0
        self.is_up = False
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def up(self) -> None:
        """Listen (again, on the same port): new connections reach the target."""
        self._call(self._listen())

    def down(self) -> None:
        """Close the listener (connections are refused) and cut every open connection."""
        self._call(self._close())

    def _call(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]
            self.is_up = True

    async def _close(self) -> None:
        self.is_up = False
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:  # accepted in the instant the listener closed
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer, self))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: TcpProxy | None = None) -> None:
    try:
        while data := await reader.read(65536):
            if delayed is not None and delayed.delay_s:
                await asyncio.sleep(delayed.delay_s)
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort()


def ledger_rows(url: str, job_ids: list[str]) -> dict[str, dict]:
    """The ledger's rows of these jobs, read directly (state, attempt, error): what /jobs hides."""
    engine = sa.create_engine(pg_url(url)) if url.startswith("postgresql") else sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT job_id, state, attempt, error FROM cfdb_jobs WHERE job_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)),
                {"ids": job_ids},
            ).mappings().all()
    finally:
        engine.dispose()
    return {row["job_id"]: dict(row) for row in rows}


# --- a tiny filesystem for the SQLite ledger -----------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``mountpoint`` (root only), unmounted afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
                   check=True, capture_output=True, text=True)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def can_mount() -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    probe = Path(f"/tmp/cfdb-faults-probe-{os.getpid()}")
    try:
        with tmpfs(probe, "64k"):
            return None
    except (OSError, subprocess.CalledProcessError) as exc:
        return getattr(exc, "stderr", None) or str(exc)
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


class Ballast:
    """A file that takes every free byte of its filesystem; ``free()`` removes it."""

    def __init__(self, directory: Path):
        self.path = directory / "ballast"
        self.size = 0

    def fill(self) -> int:
        chunk = b"\0" * 65536
        with open(self.path, "ab", buffering=0) as fh:
            for size in (65536, 4096, 512, 1):  # to the last byte
                try:
                    while True:
                        self.size += fh.write(chunk[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        return self.size

    def free(self) -> None:
        self.path.unlink(missing_ok=True)


# --- a server that counts connections ------------------------------------------------------------


class ConnectionCounter:
    """Accepts TCP connections on 127.0.0.1 and counts them; answers anything with a small 200
    (plain HTTP), so a fetch that did connect would succeed and be seen."""

    def __init__(self):
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="connection-counter", daemon=True)

    def __enter__(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


# --- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str
    cwd: str


def processes() -> dict[int, Proc]:
    """Every process we can read, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
            out[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[2]), fields[0], cmdline, cwd)
    return out


SERVICES = {"daemon": "dagster-daemon", "webserver": "dagster-webserver", "api": "serve.asgi:app"}


def services(run_pid: int) -> dict[str, int]:
    """run.sh's services: its children that lead their own process group (setsid)."""
    found = {}
    for proc in processes().values():
        if proc.ppid == run_pid and proc.pgid == proc.pid:
            for name, marker in SERVICES.items():
                if marker in proc.cmdline:
                    found[name] = proc.pid
    return found


def under(path: Path) -> list[Proc]:
    """Live processes whose working directory is ``path`` or below it."""
    prefix = str(path)
    return [p for p in processes().values()
            if p.state != "Z" and (p.cwd == prefix or p.cwd.startswith(prefix + "/"))]


# --- catalogs ------------------------------------------------------------------------------------


@dataclass
class FaultCatalog:
    """The demo catalog plus documents of our own; ``groups`` names the local_ids of each purpose."""

    path: Path
    groups: dict[str, list[str]] = field(default_factory=dict)


class CatalogWriter:
    def __init__(self, root: Path):
        self.root = root
        self.sources = root / "sources"
        self.sources.mkdir(parents=True, exist_ok=True)
        self.docs: list[dict] = []
        self.groups: dict[str, list[str]] = {}

    def add(self, group: str, local_id: str, data: bytes, fmt: tuple[str, str], suffix: str,
            dcc: str = "encode", **overrides) -> str:
        path = self.sources / f"{local_id}{suffix}"
        path.write_bytes(data)
        self.docs.append(document(dcc, local_id, path, fmt, **overrides))
        self.groups.setdefault(group, []).append(local_id)
        return local_id

    def intervals(self, group: str, prefix: str, n: int, seed: int) -> list[str]:
        """``n`` small, unsorted BED / narrowPeak / VCF / SAM sources (distinct seeds and keys)."""
        kinds = (
            (BED, ".bed", lambda s: bed_text(s, 1500)),
            (NARROWPEAK, ".narrowPeak", lambda s: bed_text(s, 800, kind="narrowPeak")),
            (SAM, ".sam", lambda s: sam_text(s, 600, unmapped=0, placed_unmapped=0)),
            (VCF, ".vcf", lambda s: vcf_text(s, 600)),
        )
        ids = []
        for i in range(n):
            fmt, suffix, make = kinds[i % len(kinds)]
            ids.append(self.add(group, f"ENCFF{prefix}{i:03d}", make(seed + i).encode(), fmt, suffix))
        return ids

    def large_bed(self, group: str, local_id: str, megabytes: int, seed: int) -> str:
        """An unsorted narrowPeak-like BED of about ``megabytes`` MB (one generated block, shuffled
        copies of it: seconds to write, seconds to sort)."""
        rng = random.Random(seed)
        block = bed_chunk(rng, 0, 150_000).encode().splitlines(keepends=True)
        path = self.sources / f"{local_id}.bed"
        size = 0
        with open(path, "wb") as fh:
            while size < megabytes * 10**6:
                rng.shuffle(block)
                data = b"".join(block)
                fh.write(data)
                size += len(data)
        self.docs.append(document("encode", local_id, path, BED))
        self.groups.setdefault(group, []).append(local_id)
        return local_id

    def write(self) -> FaultCatalog:
        demo = write_demo(self.root / "demo")
        lines = demo.read_text().splitlines()
        lines += [json.dumps(d, sort_keys=True) for d in self.docs]
        catalog = self.root / "catalog.jsonl"
        catalog.write_text("\n".join(lines) + "\n")
        return FaultCatalog(catalog, self.groups)


# --- driving the service -------------------------------------------------------------------------


def request(client: httpx.Client, local_id: str, dcc: str = "encode") -> str:
    """GET /data once (a miss): the job id of the 202."""
    response = client.get(f"/data/{dcc}/{local_id}")
    assert response.status_code == 202, (local_id, response.status_code, response.text[:300])
    return response.json()["job_id"]


def job_statuses(client: httpx.Client, job_ids: list[str]) -> dict[str, dict | None]:
    """/jobs of each (None when the answer was not a 200: the ledger is down, say)."""
    out: dict[str, dict | None] = {}
    for job_id in job_ids:
        try:
            response = client.get(f"/jobs/{job_id}", timeout=10)
        except httpx.HTTPError:
            out[job_id] = None
            continue
        out[job_id] = response.json() if response.status_code == 200 else None
    return out


def snapshot(service: Service, job_ids: list[str]) -> dict[str, dict]:
    """The /jobs body of each job that answered 200 now."""
    with service.client() as client:
        return {j: b for j, b in job_statuses(client, job_ids).items() if b is not None}


def wait_terminal(service: Service, job_ids: list[str], timeout: float, poll_s: float = 0.5,
                  errors: set[str] | None = None) -> dict[str, dict]:
    """Poll /jobs (never /data: no new request is made) until every job is completed or failed, or
    ``timeout``; the last body seen of each (and, into ``errors``, every error shown meanwhile)."""
    last: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    with service.client() as client:
        while time.monotonic() < deadline:
            pending = [j for j in job_ids if last.get(j, {}).get("status") not in TERMINAL]
            if not pending:
                break
            for job_id, body in job_statuses(client, pending).items():
                if body is not None:
                    last[job_id] = body
                    if errors is not None and body.get("error"):
                        errors.add(body["error"])
            time.sleep(poll_s)
    return last


def service_logs(service: Service, tail: int = 3000) -> str:
    parts = []
    for path in sorted((service.data_dir / "logs").glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
    return "\n".join(parts)
