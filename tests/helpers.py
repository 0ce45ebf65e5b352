"""Test helpers shared by the asset and API tests: build a file's artifacts for real, in process."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from cfdb_assets.definitions import build_definitions
from cfdb_assets.names import JOB_ID_TAG, family_name
from cfdb_assets.planning import OutputOptions
from resources import Artifact, Manifest, Settings, SortedStage, SourceIdentity, adapters
from serve.files import Files

JS = Path(__file__).resolve().parent / "js"


def gosling_read(reader: str, data_url: str, index_url: str, regions: list) -> list:
    """What the JavaScript readers Gosling pins (tests/js/read_regions.js, under Node) read from a
    URL: per region, the records (``bam``) or lines (``tabix``)."""
    proc = subprocess.run(
        ["node", str(JS / "read_regions.js"), reader, data_url, index_url, json.dumps(regions)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def files_for(settings: Settings) -> Files:
    parts = adapters(settings)
    return Files(settings, parts.catalog, parts.store, parts.ledger, OutputOptions.from_settings(settings))


def build_artifacts(settings: Settings, dcc: str, local_id: str, instance: dg.DagsterInstance | None = None,
                    run_config: dict | None = None) -> tuple[str, dg.ExecuteInProcessResult]:
    """Request a file and run its family job in process (real tools): returns (cache_key, result)."""
    files = files_for(settings)
    record = files.lookup(dcc, local_id)
    plan = files.plan(record)
    job, _ = files.request(record, plan)
    instance = instance or dg.DagsterInstance.ephemeral()
    name = family_name(record.dcc, plan.route.family)
    instance.add_dynamic_partitions(name, [plan.cache_key])
    result = build_definitions(settings).resolve_job_def(name).execute_in_process(
        partition_key=plan.cache_key,
        instance=instance,
        tags={JOB_ID_TAG: job.job_id},
        run_config=run_config,
        raise_on_error=False,
    )
    return plan.cache_key, result


def manifest_for(key: str, data: tuple[str, int], index: tuple[str, int] = ("data.bam.bai", 10)) -> Manifest:
    """A manifest listing a data and an index artifact of the given names and sizes."""
    source = SourceIdentity("encode", "ENCFF1", "x.bam", "BAM", "md5:" + "0" * 32, 1, "0" * 32, "0" * 64)
    data_artifact = Artifact(data[0], data[1], "d" * 64)
    stage = SortedStage(data_artifact, None, 1.0, source, {"samtools": "samtools 1.16"}, {"compression_level": 4})
    return Manifest(
        cache_key=key, family="alignments", format="BAM", data=data_artifact,
        index=Artifact(index[0], index[1], "i" * 64, "bai"), sorted=stage, tools=stage.tools,
        options=stage.options, seconds={"sorted": 1.0, "index": 0.1}, created_at="2026-01-01T00:00:00Z",
    )


@contextlib.contextmanager
def tls_served(server, certs: Path) -> Iterator[Path]:
    """Serve ``server`` (an http.server on 127.0.0.1) behind real TLS with a fresh self-signed
    certificate for 127.0.0.1, in a thread; yields the certificate (the client's CA bundle)."""
    key, cert = certs / "key.pem", certs / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_until(probe, what: str, timeout_s: float = 120, every_s: float = 0.5):
    """Poll ``probe`` until it returns something true, and return that; AssertionError naming
    ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")


class LiveAPI:
    """The app under uvicorn on a loopback port, in a thread (a real socket, for Node and raw HTTP);
    ``with`` gives its base URL. ``http``: uvicorn's protocol (a name or a class)."""

    def __init__(self, app, http="auto", log_level: str = "warning"):
        import socket

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, http=http,
                                                    log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
