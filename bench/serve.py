"""Cache-hit range serving: our API vs nginx on the same 1 GB artifact, in the same run.

64 KiB ranges at random offsets (wrk + a Lua script), 1 and 16 concurrent connections on loopback;
prints requests/s, p50/p99 latency and the ratio ours/nginx. Needs the Debian packages nginx-light
and wrk (installed here if missing).

    .venv/bin/python bench/serve.py [--gb 1.0] [--seconds 10] [--workers 1,2] [--servers uvicorn,uvicorn-asgi,granian]

``--servers``: the servers to measure ours on: ``uvicorn`` as scripts/run.sh starts it (plain
artifact reads answered by serve/fast_protocol.py), ``uvicorn-asgi`` (uvicorn's own httptools
protocol: every request through ASGI), ``granian`` (when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "be0c0ffee0000000000000000000beef"
RANGE = 64 * 1024

LUA = """
math.randomseed(42)
local size = {size}
request = function()
  local off = math.random(0, size - {range} - 1)
  return wrk.format("GET", "{path}", {{["Range"] = "bytes=" .. off .. "-" .. (off + {range} - 1)}})
end
"""

NGINX_CONF = """
user root;  # the temp dir is private to us
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen 127.0.0.1:{port}; root {store}; location /artifacts/ {{ alias {store}/; }} }}
}}
"""


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk")) if not shutil.which(tool)]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def make_store(root: Path, gb: float) -> Path:
    """A store with one ready artifact set of ``gb`` GB (random bytes; serving never parses them)."""
    store = root / "store"
    (store / KEY).mkdir(parents=True)
    data = store / KEY / "data.bam"
    size = int(gb * 1e9)
    with open(data, "wb") as out:
        chunk = os.urandom(8 * 1024 * 1024)
        for _ in range(size // len(chunk)):
            out.write(chunk)
        out.write(chunk[: size % len(chunk)])
    data_entry = {"name": "data.bam", "size": size, "sha256": "0" * 64}
    source = {"dcc": "encode", "local_id": "BENCH", "filename": "bench.bam", "format": "BAM",
              "checksum": "md5:" + "0" * 32, "bytes": size, "md5": "0" * 32, "sha256": "0" * 64}
    stage = {**data_entry, "index": None, "seconds": 0.0, "source": source, "tools": {}, "options": {}}
    manifest = {"cache_key": KEY, "family": "alignments", "format": "BAM", "index_type": "bai",
                "created_at": "2026-01-01T00:00:00Z", "sorted": stage, "source": source, "tools": {},
                "options": {}, "seconds": {"sorted": 0.0, "index": 0.0},
                "artifacts": {"data": data_entry,
                              "index": {"name": "data.bam.bai", "size": 0, "sha256": "1" * 64, "kind": "bai"}}}
    (store / KEY / "data.bam.bai").write_bytes(b"")
    (store / KEY / "manifest.json").write_text(json.dumps(manifest))
    return store


def wrk(port: int, size: int, connections: int, seconds: int, root: Path) -> dict:
    script = root / "ranges.lua"
    script.write_text(LUA.format(size=size, range=RANGE, path=f"/artifacts/{KEY}/data.bam"))
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} non-206 answers:\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": pct("50"), "p99": pct("99")}


def run_server(cmd: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def server_command(server: str, port: int, workers: int) -> list[str]:
    """The API under ``server`` as scripts/run.sh would start it, on ``port``."""
    if server == "granian":
        return [str(Path(sys.executable).with_name("granian")), "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-ws",
                "serve.asgi:app"]
    # "uvicorn" as scripts/run.sh starts it (serve/fast_protocol.py); "uvicorn-asgi": uvicorn's own protocol.
    protocol = "serve.fast_protocol:ArtifactProtocol" if server == "uvicorn" else "httptools"
    return [sys.executable, "-m", "uvicorn", "serve.asgi:app", "--http", protocol, "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", default="1,2", help="uvicorn/nginx worker counts to measure")
    parser.add_argument("--servers", default="uvicorn", help="servers for ours: uvicorn, uvicorn-asgi, granian")
    args = parser.parse_args()
    ensure_tools()
    root = Path(tempfile.mkdtemp(prefix="cfdb-bench-serve-"))
    try:
        store = make_store(root, args.gb)
        size = (store / KEY / "data.bam").stat().st_size
        (root / "tmp").mkdir()
        catalog = root / "catalog.jsonl"
        catalog.write_text("")
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            for connections in (1, 16):
                port = free_port()
                conf = root / "nginx.conf"
                conf.write_text(NGINX_CONF.format(workers=workers, root=root, port=port, store=store))
                nginx = run_server(["nginx", "-c", str(conf), "-p", str(root)], port)
                try:
                    base = wrk(port, size, connections, args.seconds, root)
                finally:
                    stop(nginx)
                env = {**os.environ, "CFDB_DATA_DIR": str(root / "data"), "CFDB_STORE": str(store), "CFDB_CATALOG": str(catalog)}
                for server in args.servers.split(","):
                    port = free_port()
                    api = run_server(server_command(server, port, workers), port, env)
                    try:
                        time.sleep(1 + workers)  # every worker up
                        ours = wrk(port, size, connections, args.seconds, root)
                    finally:
                        stop(api)
                    rows.append((f"{server} {workers}", connections, ours, base))
        print(f"64 KiB random ranges of a {size / 1e9:.2f} GB artifact, {args.seconds} s per cell, loopback")
        print(f"{'server':>10} {'conns':>5} {'ours req/s':>11} {'nginx req/s':>12} {'ratio':>6} "
              f"{'ours p50/p99 ms':>16} {'nginx p50/p99 ms':>17}")
        for workers, connections, ours, base in rows:
            print(f"{workers:>10} {connections:>5} {ours['rps']:>11.0f} {base['rps']:>12.0f} {ours['rps'] / base['rps']:>6.2f} "
                  f"{ours['p50']:>7.2f}/{ours['p99']:<8.2f} {base['p50']:>8.2f}/{base['p99']:<8.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
