"""The one production image (deploy/Dockerfile), run with podman: tools, roles, user, PID 1, secrets."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid

import pytest

from tests.deploy.image import HOST_CA, ROOT, packages, podman

# podman's own failures (125), a command it cannot start (126) or find (127): the container never ran.
_NOT_RUN = {125, 126, 127}


def run(image: str, *cmd: str, options: tuple[str, ...] = ()) -> str:
    """stdout of `cmd` in a throwaway container of `image`; fails with podman's words otherwise."""
    done = podman("run", "--rm", *options, image, *cmd)
    if done.returncode in _NOT_RUN:
        pytest.fail(f"podman could not run a container of {image}: {done.stderr.strip()[-1500:]}", pytrace=False)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-1500:]}"
    return done.stdout


def test_dockerfile_copies_every_package():
    # Without the image: a package added to pyproject.toml must reach the build context and the image.
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    for package in packages():
        assert f"COPY {package}/ {package}/" in dockerfile, f"add `COPY {package}/ {package}/` to deploy/Dockerfile"
        assert f"!{package}/" in allowed, f"add `!{package}/` to .dockerignore"


def test_bioinformatics_tools(image):
    out = run(image, "sh", "-c", "samtools --version; tabix --version; bgzip --version; bcftools --version; "
                                 "echo gffread $(gffread --version)")
    for tool in ("samtools 1.", "tabix (htslib) 1.", "bgzip (htslib) 1.", "bcftools 1.", "gffread 0."):
        assert tool in out


def test_run_worker_command_passes_through(image):
    # EcsRunLauncher replaces the container command with `dagster api execute_run <args>`.
    assert "Usage: dagster api execute_run" in run(image, "dagster", "api", "execute_run", "--help")


@pytest.mark.parametrize(("role", "usage"), [("webserver", "Usage: dagster-webserver"),
                                             ("daemon", "Usage: dagster-daemon run"),
                                             ("api", "Usage: uvicorn")])
def test_role_words_start_their_program(image, role, usage):
    # The entrypoint appends extra arguments, so `--help` shows which program a role word execs.
    assert usage in run(image, role, "--help")


def test_code_location_loads(image):
    # What the daemon, webserver and every run worker do first: import cfdb_assets.definitions. A
    # scratch DAGSTER_HOME: the production instance needs Postgres, ECS and S3 (tests/e2e covers it).
    out = run(image, "sh", "-c", "dagster definitions validate -w workspace.yaml 2>&1", options=("-e", "DAGSTER_HOME=/tmp"))
    assert "All code locations passed validation" in out


def test_production_instance_is_installed(image):
    assert run(image, "sh", "-c", 'cat "$DAGSTER_HOME/dagster.yaml"') == (ROOT / "deploy" / "dagster.yaml").read_text()


def test_api_refuses_local_settings_under_the_production_instance(image):
    # The image's DAGSTER_HOME is the production instance, so forgotten settings (local ledger, store
    # and catalog) stop the API at start instead of serving from the container's disk.
    done = podman("run", "--rm", "--network", "none", image, "api")
    assert done.returncode != 0 and "production" in (done.stdout + done.stderr).lower(), done.stdout + done.stderr


def test_non_root_and_tini_is_pid_1(image):
    uid, cmdline = run(image, "sh", "-c", "id -u; tr '\\0' ' ' < /proc/1/cmdline").splitlines()
    assert int(uid) != 0
    assert cmdline.split()[0].endswith("tini"), cmdline


def test_no_build_secret_or_host_ca_in_image(image):
    # The host's CA bundle was only a build secret: no file, setting or environment points at it ...
    out = run(image, "sh", "-c", "ls -A /run/secrets 2>/dev/null; echo ---; pip config list; echo ---; env")
    secrets, pip_config, env = out.split("---\n")
    assert secrets.strip() == ""
    assert pip_config.strip() == ""
    for var in ("PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
                "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY"):
        assert f"\n{var}=" not in f"\n{env}", f"{var} is set in the image"
    # ... and no certificate the host trusts beyond Debian's (e.g. an egress proxy's CA) is anywhere.
    image_bundle = run(image, "cat", "/etc/ssl/certs/ca-certificates.crt")
    extra = [pem for pem in _pems(HOST_CA.read_text()) if pem not in image_bundle] if HOST_CA.exists() else []
    if extra:
        probes = "\n".join(pem.splitlines()[3] for pem in extra) + "\n"  # one 64-char base64 line each
        # As root in the container, so that every file can be read.
        found = podman("run", "--rm", "-i", "--user", "0", image, "grep", "-rlsF", "--exclude-dir=proc",
                       "--exclude-dir=sys", "--exclude-dir=dev", "-f", "/dev/stdin", "/", input=probes, timeout=300)
        assert found.returncode == 1, f"the host's CA certificates are in the image: {found.stdout}{found.stderr}"


def _pems(bundle: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [block.split("-----BEGIN CERTIFICATE-----", 1)[1] for block in bundle.split(end) if "BEGIN CERT" in block]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_api_role_answers_health(image, tmp_path):
    record = {"submission": "encode", "local_id": "ENCFF1", "md5": "0" * 32,
              "access_url": "https://example.org/x.bed", "filename": "x.bed",
              "file_format": {"id": "format:3003", "name": "BED"}}
    (tmp_path / "catalog.jsonl").write_text(json.dumps(record) + "\n")
    data = tmp_path / "data"
    data.mkdir()
    tmp_path.chmod(0o755)  # the image's user (uid 10001) reads the catalog ...
    data.chmod(0o777)  # ... and writes the ledger in the data directory
    port, name = _free_port(), f"cfdb-test-api-{uuid.uuid4().hex[:8]}"
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # A scratch DAGSTER_HOME: the image's own is the production instance (EcsRunLauncher), under
        # which the production guard refuses this test's local catalog, ledger and store.
        started = podman("run", "--detach", "--name", name, "--network", "host", "-v", f"{tmp_path}:/mnt/t",
                         "-e", f"PORT={port}", "-e", "CFDB_CATALOG=/mnt/t/catalog.jsonl",
                         "-e", "CFDB_DATA_DIR=/mnt/t/data", "-e", "DAGSTER_HOME=/tmp", image, "api")
        if started.returncode != 0:
            pytest.fail(f"podman could not start the API container: {started.stderr.strip()[-1500:]}", pytrace=False)
        deadline = time.monotonic() + 60
        while True:
            try:
                with local.open(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert json.load(resp)["status"] == "ok"
                break
            except OSError:
                state = podman("container", "inspect", "--format", "{{.State.Status}}", name).stdout.strip()
                if state != "running" or time.monotonic() > deadline:
                    logs = podman("logs", name)
                    pytest.fail(f"the API container ({state}) did not answer /health:\n{logs.stdout}{logs.stderr}")
                time.sleep(0.5)
        # The catalog is read from the mount and the ledger opened in the writable data directory.
        with local.open(f"http://127.0.0.1:{port}/files/encode/ENCFF1", timeout=10) as resp:
            assert resp.status == 200
            assert json.load(resp)["local_id"] == "ENCFF1"
        # The viewer's pages and the Gosling bundle scripts/setup.sh vendored into serve/ came along.
        with local.open(f"http://127.0.0.1:{port}/view/encode/ENCFF1", timeout=10) as resp:
            assert resp.status == 200 and "/static/vendor/gosling.js?v=" in resp.read().decode()
        with local.open(f"http://127.0.0.1:{port}/static/vendor/gosling.js", timeout=10) as resp:
            assert resp.status == 200 and int(resp.headers["Content-Length"]) > 1_000_000
    finally:
        podman("rm", "--force", "--time", "5", name)


def test_image_size(image, capsys):
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    with capsys.disabled():
        print(f"\n{image}: {size / 1e6:.0f} MB")
    assert size < 1_000_000_000, "the image grew past 1 GB: check .dockerignore and the apt/pip layers"
