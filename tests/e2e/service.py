"""The real service as processes: `scripts/run.sh` (the README's `make run`) on a temporary data
directory and DAGSTER_HOME. Used by the end-to-end tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """A running `scripts/run.sh`: its API base URL, data directory and Dagster home."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.data_dir = root / "data"
        self.dagster_home = root / "dagster_home"
        self.api_port, self.dagster_port = free_port(), free_port()
        self.env = {
            **os.environ,
            **env,
            "CFDB_DATA_DIR": str(self.data_dir),
            "DAGSTER_HOME": str(self.dagster_home),
            "CFDB_API_PORT": str(self.api_port),
            "CFDB_DAGSTER_PORT": str(self.dagster_port),
        }
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.log = root / "run.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "run.sh")],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # run.sh stopped its services on the way out
                raise RuntimeError(f"run.sh exited early:\n{self.log.read_text()[-3000:]}")
            if "Press Ctrl-C" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"run.sh did not become ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to run.sh, whose trap stops every service group it started."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def wait_job(self, job_id: str, timeout: float = 90) -> tuple[dict, list[str]]:
        """Poll /jobs/{id} until it ends; returns the last body and the statuses seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                body = client.get(f"/jobs/{job_id}").json()
                if not seen or seen[-1] != body["status"]:
                    seen.append(body["status"])
                if body["status"] in ("completed", "failed"):
                    return body, seen
                time.sleep(0.2)
        logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in (self.data_dir / "logs").glob("*.log"))
        raise AssertionError(f"job {job_id} did not end in {timeout} s; statuses {seen}\n{logs}")
