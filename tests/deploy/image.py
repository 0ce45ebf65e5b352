"""Build deploy/Dockerfile with podman the way tests and CI do (shared/reference/containers.md).

No registry is reachable here, so the base is made locally (mmdebstrap + podman import, once per
machine), and pip reaches PyPI only through an intercepting proxy, so the host's CA bundle is passed
as a build secret: mounted for the dependency step only, never in a layer. Production builds use
neither (deploy/Dockerfile defaults to debian:bookworm-slim).

`build_image()` returns a tag derived from a hash of the build inputs, so an unchanged tree is not
rebuilt; suites needing the image call it (tests/deploy/conftest.py has a session fixture).
Build from a shell:  .venv/bin/python -m tests.deploy.image
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
BASE = "localhost/debian:bookworm"
REPOSITORY = "localhost/cfdb-assets"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Everything the build reads besides the packages (keep in step with deploy/Dockerfile, .dockerignore).
INPUT_FILES = ("deploy/Dockerfile", ".dockerignore", "deploy/entrypoint.sh", "deploy/dagster.yaml",
               "pyproject.toml", "constraints.txt", "workspace.yaml")

# dpkg excludes of Debian's -slim images, so the test image's size is close to production's.
SLIM = ("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias")


class ImageError(RuntimeError):
    """The image cannot be built or run here; the message says why and what to do."""


def packages() -> list[str]:
    """The project's packages (pyproject.toml): what deploy/Dockerfile copies and installs."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]["packages"]


def podman(*args: str, timeout: float | None = 120, **kwargs) -> subprocess.CompletedProcess:
    """podman with the test containers.conf (runc, rlimits this host allows), output captured."""
    if shutil.which("podman") is None:
        raise ImageError("podman is not installed, so the container image cannot be built or run; "
                         "`make test` installs it (scripts/setup.sh test).")
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    kwargs.setdefault("capture_output", True)
    return subprocess.run(["podman", *args], env=env, text=True, errors="replace", timeout=timeout, check=False, **kwargs)


def input_hash() -> str:
    digest = hashlib.sha256()
    paths = [ROOT / name for name in INPUT_FILES]
    for package in packages():
        paths += (p for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in sorted(p for p in paths if p.exists()):
        digest.update(f"{path.relative_to(ROOT)}\0{path.stat().st_mode & 0o111}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _exists(ref: str) -> bool:
    return podman("image", "exists", ref).returncode == 0


def _mirror() -> str:
    """The host's Debian mirror, read at run time (never written into the repository)."""
    for line in APT_SOURCES.read_text().splitlines():
        if line.startswith("URIs:"):
            return line.split()[1]
    raise ImageError(f"No `URIs:` line in {APT_SOURCES}: cannot tell which Debian mirror to build the base from.")


def ensure_base() -> None:
    """localhost/debian:bookworm, a minbase Debian made without a registry (once per machine)."""
    if _exists(BASE):
        return
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed, so the Debian base image cannot be made; "
                         "`make test` installs it (scripts/setup.sh test).")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        opts = [f"--dpkgopt={opt}" for opt in SLIM]
        made = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", *opts, "bookworm", str(rootfs), _mirror()],
                              capture_output=True, text=True, timeout=900, check=False)
        if made.returncode != 0:
            raise ImageError(f"mmdebstrap could not make the Debian base: {made.stderr.strip()[-2000:]}")
        imported = podman("import", "--quiet", str(rootfs), BASE, timeout=300)
        if imported.returncode != 0:
            raise ImageError(f"podman import of the Debian base failed: {imported.stderr.strip()[-2000:]}")


def build_image(log: Path | None = None) -> str:
    """Build the image unless this exact tree was built before; return its tag."""
    tag = f"{REPOSITORY}:test-{input_hash()}"
    lock_path = Path(tempfile.gettempdir()) / "cfdb-assets-image.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, whichever suite asks
        if _exists(tag):
            return tag
        info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}")
        if info.returncode != 0:
            raise ImageError(f"podman cannot run here: {info.stderr.strip()[-1000:]}")
        ensure_base()
        log = log or Path(tempfile.gettempdir()) / "cfdb-assets-image-build.log"
        started = time.monotonic()
        with open(log, "w") as out:
            secret = ["--secret", f"id=ca,src={HOST_CA}"] if HOST_CA.exists() else []
            built = podman(
                "build", "--file", "deploy/Dockerfile", "--build-arg", f"BASE={BASE}", *secret, "--tag", tag, ".",
                cwd=ROOT, timeout=1800, capture_output=False, stdout=out, stderr=subprocess.STDOUT,
            )
        if built.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
            raise ImageError(f"podman build of deploy/Dockerfile failed (full log: {log}):\n{tail}")
        print(f"built {tag} in {time.monotonic() - started:.0f} s (log: {log})")
        # Older test builds only take disk space (layers still shared stay; images in use are kept).
        listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY).stdout.split()
        stale = [ref for ref in listed if ref != tag and ref.startswith(f"{REPOSITORY}:test-")]
        if stale:
            podman("rmi", *stale)
        return tag


if __name__ == "__main__":
    print(build_image())
