"""Settings: every ``CFDB_*`` variable is read here, from an injectable environ, and nowhere else.

``Settings`` is a plain frozen dataclass. Both composition roots (the Dagster definitions and the HTTP
app) build their adapters and options from it, so the two always agree on the catalog, store, ledger
and the output options that shape cache keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

__all__ = ["DEFAULT_UPSTREAM_HOSTS", "LOCAL", "PRODUCTION", "Settings", "SettingsError"]

DEFAULT_DCCS = ("4dn", "encode", "hubmap")
# The upstream hosts the fetcher may connect to (the SSRF allowlist): the original service's
# (reference §7, "Outbound allowlist"), plus the HuBMAP DRS broker its allowlist lacked (§8, §11.13).
# An entry matches its host exactly; an entry starting with a dot matches any subdomain of it.
DEFAULT_UPSTREAM_HOSTS = (
    "data.4dnucleome.org",  # 4DN: the portal, its DRS server and its sidecars
    "www.encodeproject.org",  # ENCODE: @@download URLs
    "encode-public.s3.amazonaws.com",  # ENCODE: where its downloads redirect
    "assets.hubmapconsortium.org",  # HuBMAP: file assets
    "drs.hubmapconsortium.org",  # HuBMAP: the DRS broker (§11.13)
    "s3.amazonaws.com",  # path-style S3 URLs
    ".s3.amazonaws.com",  # virtual-hosted S3 buckets (signed download redirects)
    ".s3.us-east-1.amazonaws.com",
    ".s3.us-west-1.amazonaws.com",
    ".s3.us-west-2.amazonaws.com",
)
LOOPBACK_HOSTS = {"localhost", "127.0.0.1"}
_HOST = re.compile(r"^\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
# The tool knobs' defaults, here and nowhere else. The BGZF level shapes the artifact bytes (so the
# cache key); measured by bench/pipelines.py on 1 GB inputs (2 cores): level 4 builds a BAM in 0.63x
# the time of level 6 for 1.04x the bytes, a BED in 0.95x for 1.00x; level 1 is faster still
# (0.48x / 0.81x) but 1.08x / 1.11x the bytes every browser view then reads.
DEFAULT_COMPRESSION_LEVEL = 4
DEFAULT_THREADS = 2
# Per sort thread (samtools' -m; GNU sort gets the threads' total): "auto" sizes it from the memory
# available to the run when it starts (cfdb_assets/memory.py).
DEFAULT_SORT_MEMORY = "auto"
_MEMORY = re.compile(r"^(\d+[KMG]?|auto)$", re.IGNORECASE)


LOCAL, PRODUCTION = "local", "production"
# Run launchers that run on this machine; any other one (EcsRunLauncher) means a fleet of workers
# that must share the ledger, the store and the catalog with the API.
LOCAL_LAUNCHERS = {"DefaultRunLauncher"}


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


def _profile(environ: Mapping[str, str]) -> str:
    """CFDB_PROFILE, else production when $DAGSTER_HOME/dagster.yaml names a remote run launcher."""
    raw = environ.get("CFDB_PROFILE", "").strip().lower()
    if raw:
        if raw not in (LOCAL, PRODUCTION):
            raise SettingsError(f"CFDB_PROFILE={raw!r} is not a profile; use local or production.")
        return raw
    launcher = _run_launcher(environ.get("DAGSTER_HOME", "").strip())
    return PRODUCTION if launcher and launcher not in LOCAL_LAUNCHERS else LOCAL


def _run_launcher(dagster_home: str) -> str | None:
    """The class name of the instance's run launcher (None: the default one)."""
    if not dagster_home:
        return None
    try:
        import yaml

        with open(Path(dagster_home) / "dagster.yaml", encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, ValueError):  # no instance file (the default launcher), or one Dagster will refuse
        return None
    launcher = config.get("run_launcher") if isinstance(config, dict) else None
    return str(launcher.get("class")) if isinstance(launcher, dict) and launcher.get("class") else None


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number.") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} is out of range; expected {low}..{high}.")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false.")


def _store(environ: Mapping[str, str], data_dir: Path) -> str:
    """CFDB_STORE (a directory or s3://bucket/prefix), else CFDB_S3_BUCKET (+ CFDB_S3_PREFIX)."""
    store = environ.get("CFDB_STORE", "").strip()
    bucket = environ.get("CFDB_S3_BUCKET", "").strip()
    if store and bucket:
        raise SettingsError("Set CFDB_STORE or CFDB_S3_BUCKET, not both.")
    if bucket:
        return f"s3://{bucket}/{environ.get('CFDB_S3_PREFIX', '').strip().strip('/')}".rstrip("/")
    return store or str(data_dir / "artifacts")


def _upstream_hosts(environ: Mapping[str, str]) -> tuple[str, ...]:
    """CFDB_UPSTREAM_HOSTS: comma-separated host names (``.example.org``: its subdomains; ``*``: any
    public host), else the DCCs' own hosts."""
    raw = environ.get("CFDB_UPSTREAM_HOSTS", "")
    hosts = []
    for entry in raw.split(","):
        host = entry.strip().lower()
        if not host:
            continue
        if host != "*":
            host = host.rstrip(".")  # a fully qualified name's trailing dot
            if not _HOST.match(host):
                raise SettingsError(
                    f"CFDB_UPSTREAM_HOSTS has an invalid host {entry.strip()!r}; list host names only "
                    "(no scheme, port or path), .example.org for its subdomains, or * for any public host."
                )
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts) or DEFAULT_UPSTREAM_HOSTS


@dataclass(frozen=True)
class Settings:
    """The service configuration (see the README's configuration table)."""

    data_dir: Path
    catalog: str
    catalog_database: str
    ledger_url: str
    store: str
    work_dir: Path
    s3_endpoint_url: str | None = None
    dccs: tuple[str, ...] = DEFAULT_DCCS
    dagster_url: str = "http://localhost:3000"
    api_url: str = "http://localhost:8000"  # how people reach the API (links in the Dagster UI)
    threads: int = DEFAULT_THREADS
    sort_memory: str = DEFAULT_SORT_MEMORY
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    failure_retry: timedelta = timedelta(hours=1)
    allow_http_loopback: bool = False
    upstream_hosts: tuple[str, ...] = DEFAULT_UPSTREAM_HOSTS
    cors_origin: str = "*"
    processing: bool = True
    max_active_jobs: int = 1024
    allow_file_urls: bool = True
    s3_redirect: bool = False
    profile: str = LOCAL
    run_window: int = 16
    max_attempts: int = 3
    # Size each run's worker from its source (cfdb_assets/sizing.py: ecs/* tags, max runtime, the
    # tools' threads and sort memory); the size class tag is set either way.
    sized_runs: bool = False

    def check(self) -> None:
        """Refuse settings that cannot work for this profile (once, at startup): in production the
        API, the daemon and every run worker must share the ledger, the store and the catalog, and
        never read the local disk of whichever machine they happen to run on."""
        if self.profile != PRODUCTION:
            return
        problems = []
        if self.ledger_url.startswith("sqlite"):
            problems.append("the request ledger is a SQLite file; set CFDB_LEDGER_URL to the shared Postgres "
                            "(postgresql://user@host/db)")
        if not self.store.startswith("s3://"):
            problems.append("the artifact store is a local directory; set CFDB_STORE=s3://bucket/prefix "
                            "(or CFDB_S3_BUCKET)")
        if "://" not in self.catalog or self.catalog.startswith("file://"):
            problems.append("the catalog is a file on local disk; set CFDB_CATALOG to a mongodb:// URI or an "
                            "s3://bucket/key JSON Lines snapshot")
        if self.allow_file_urls:
            problems.append("file:// access URLs are allowed; set CFDB_ALLOW_FILE_URLS=false")
        if self.allow_http_loopback and not set(self.upstream_hosts) <= LOOPBACK_HOSTS:
            # A closed rig (CFDB_UPSTREAM_HOSTS=localhost: it can fetch nothing but this machine) may
            # allow loopback; that is how the suite runs the production profile end to end.
            problems.append("loopback upstreams are allowed; unset CFDB_ALLOW_HTTP_LOOPBACK")
        if problems:
            raise SettingsError(
                "The production profile (CFDB_PROFILE=production, or a remote run launcher in "
                f"$DAGSTER_HOME/dagster.yaml) refuses to start: {'; '.join(problems)}."
            )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``CFDB_*`` variables (defaults: the embedded, local profile)."""
        env = os.environ if environ is None else environ
        profile = _profile(env)
        data_dir = Path(env.get("CFDB_DATA_DIR", "").strip() or ".cfdb").absolute()
        dccs = tuple(d.strip().lower() for d in env.get("CFDB_DCCS", ",".join(DEFAULT_DCCS)).split(",") if d.strip())
        for dcc in dccs:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", dcc):
                raise SettingsError(f"CFDB_DCCS has an invalid DCC name {dcc!r}; use letters, digits, _.")
        sort_memory = env.get("CFDB_SORT_MEMORY", "").strip() or DEFAULT_SORT_MEMORY
        if not _MEMORY.match(sort_memory):
            raise SettingsError(f"CFDB_SORT_MEMORY={sort_memory!r} must be auto, or look like 512M or 2G.")
        return cls(
            data_dir=data_dir,
            catalog=env.get("CFDB_CATALOG", "").strip() or str(data_dir / "demo" / "catalog.jsonl"),
            catalog_database=env.get("CFDB_CATALOG_DB", "").strip() or "cfdb",
            ledger_url=env.get("CFDB_LEDGER_URL", "").strip() or f"sqlite:///{data_dir / 'ledger.db'}",
            store=_store(env, data_dir),
            s3_endpoint_url=env.get("AWS_ENDPOINT_URL", "").strip() or None,
            work_dir=Path(env.get("CFDB_WORK_DIR", "").strip() or data_dir / "work").absolute(),
            dccs=dccs or DEFAULT_DCCS,
            dagster_url=(env.get("CFDB_DAGSTER_URL", "").strip() or "http://localhost:3000").rstrip("/"),
            api_url=(env.get("CFDB_API_URL", "").strip() or "http://localhost:8000").rstrip("/"),
            threads=_int(env, "CFDB_THREADS", DEFAULT_THREADS, 1, 64),
            sort_memory=sort_memory,
            compression_level=_int(env, "CFDB_COMPRESSION_LEVEL", DEFAULT_COMPRESSION_LEVEL, 0, 9),
            failure_retry=timedelta(seconds=_int(env, "CFDB_FAILURE_RETRY_S", 3600, 0, 30 * 86400)),
            allow_http_loopback=_bool(env, "CFDB_ALLOW_HTTP_LOOPBACK", False),
            upstream_hosts=_upstream_hosts(env),
            cors_origin=env.get("CFDB_CORS_ORIGIN", "").strip() or "*",
            processing=_bool(env, "CFDB_PROCESSING", True),
            max_active_jobs=_int(env, "CFDB_MAX_ACTIVE_JOBS", 1024, 0, 10**7),
            allow_file_urls=_bool(env, "CFDB_ALLOW_FILE_URLS", profile == LOCAL),  # demo: file://
            s3_redirect=_bool(env, "CFDB_S3_REDIRECT", False),
            profile=profile,
            run_window=_int(env, "CFDB_RUN_WINDOW", 16, 1, 100_000),
            max_attempts=_int(env, "CFDB_MAX_ATTEMPTS", 3, 1, 20),
            sized_runs=_bool(env, "CFDB_SIZED_RUNS", profile == PRODUCTION),
        )
