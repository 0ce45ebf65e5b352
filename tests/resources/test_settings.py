"""Settings.from_environ: defaults derived from CFDB_DATA_DIR, overrides, and refused values."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from resources.settings import DEFAULT_UPSTREAM_HOSTS, Settings, SettingsError
from resources.wiring import adapters


def test_defaults_derive_from_the_data_dir(tmp_path):
    data = tmp_path / "data"

    settings = Settings.from_environ({"CFDB_DATA_DIR": str(data)})

    assert settings.data_dir == data
    assert settings.catalog == str(data / "demo" / "catalog.jsonl")
    assert settings.ledger_url == f"sqlite:///{data / 'ledger.db'}"
    assert settings.store == str(data / "artifacts")
    assert settings.work_dir == data / "work"
    assert settings.catalog_database == "cfdb"
    assert settings.dccs == ("4dn", "encode", "hubmap")
    assert settings.dagster_url == "http://localhost:3000"
    assert settings.threads == 2
    assert settings.sort_memory == "auto"
    assert settings.compression_level == 4  # bench/pipelines.py chose it
    assert settings.failure_retry == timedelta(hours=1)
    assert settings.allow_http_loopback is False
    assert settings.upstream_hosts == DEFAULT_UPSTREAM_HOSTS
    assert settings.cors_origin == "*"


def test_ledger_default_is_an_absolute_sqlite_url(tmp_path):
    settings = Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path)})

    assert settings.ledger_url.startswith("sqlite:////")  # sqlite:/// + an absolute path


def test_data_dir_defaults_to_dot_cfdb_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_environ({})

    assert settings.data_dir == tmp_path / ".cfdb"
    assert settings.store == str(tmp_path / ".cfdb" / "artifacts")


def test_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_environ({"CFDB_DATA_DIR": "rel/dir"})

    assert settings.data_dir == tmp_path / "rel" / "dir"
    assert settings.work_dir == tmp_path / "rel" / "dir" / "work"


def test_blank_values_fall_back_to_defaults(tmp_path):
    blank = {
        name: "  "
        for name in (
            "CFDB_CATALOG",
            "CFDB_CATALOG_DB",
            "CFDB_LEDGER_URL",
            "CFDB_STORE",
            "CFDB_WORK_DIR",
            "CFDB_DAGSTER_URL",
            "CFDB_THREADS",
            "CFDB_SORT_MEMORY",
            "CFDB_COMPRESSION_LEVEL",
            "CFDB_FAILURE_RETRY_S",
            "CFDB_ALLOW_HTTP_LOOPBACK",
            "CFDB_UPSTREAM_HOSTS",
            "CFDB_CORS_ORIGIN",
        )
    }
    env = {"CFDB_DATA_DIR": str(tmp_path)}

    assert Settings.from_environ({**env, **blank}) == Settings.from_environ(env)


OVERRIDES = [
    # (variable, value, attribute, expected)
    ("CFDB_CATALOG", "/srv/catalog.jsonl", "catalog", "/srv/catalog.jsonl"),
    ("CFDB_CATALOG", "mongodb://mongo:27017", "catalog", "mongodb://mongo:27017"),
    ("CFDB_CATALOG_DB", "cfde", "catalog_database", "cfde"),
    ("CFDB_LEDGER_URL", "postgresql://cfdb@db/cfdb", "ledger_url", "postgresql://cfdb@db/cfdb"),
    ("CFDB_STORE", "s3://bucket/prefix", "store", "s3://bucket/prefix"),
    ("CFDB_WORK_DIR", "/scratch/work", "work_dir", Path("/scratch/work")),
    ("CFDB_DCCS", "encode", "dccs", ("encode",)),
    ("CFDB_DCCS", " ENCODE , 4dn,, ", "dccs", ("encode", "4dn")),
    ("CFDB_DCCS", "my_dcc2", "dccs", ("my_dcc2",)),
    ("CFDB_DAGSTER_URL", "http://dagster:3000/", "dagster_url", "http://dagster:3000"),
    ("CFDB_THREADS", "8", "threads", 8),
    ("CFDB_THREADS", "1", "threads", 1),
    ("CFDB_THREADS", "64", "threads", 64),
    ("CFDB_SORT_MEMORY", "2G", "sort_memory", "2G"),
    ("CFDB_SORT_MEMORY", "512m", "sort_memory", "512m"),
    ("CFDB_SORT_MEMORY", "1000000", "sort_memory", "1000000"),
    ("CFDB_SORT_MEMORY", "auto", "sort_memory", "auto"),
    ("CFDB_COMPRESSION_LEVEL", "9", "compression_level", 9),
    ("CFDB_COMPRESSION_LEVEL", "0", "compression_level", 0),
    ("CFDB_FAILURE_RETRY_S", "60", "failure_retry", timedelta(seconds=60)),
    ("CFDB_FAILURE_RETRY_S", "0", "failure_retry", timedelta(0)),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "true", "allow_http_loopback", True),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "1", "allow_http_loopback", True),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "Yes", "allow_http_loopback", True),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "on", "allow_http_loopback", True),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "false", "allow_http_loopback", False),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "0", "allow_http_loopback", False),
    ("CFDB_CORS_ORIGIN", "https://example.org", "cors_origin", "https://example.org"),
    ("CFDB_UPSTREAM_HOSTS", "files.example.org", "upstream_hosts", ("files.example.org",)),
    ("CFDB_UPSTREAM_HOSTS", " Files.Example.ORG. , .S3.amazonaws.com,, ", "upstream_hosts",
     ("files.example.org", ".s3.amazonaws.com")),
    ("CFDB_UPSTREAM_HOSTS", "*", "upstream_hosts", ("*",)),
    ("CFDB_UPSTREAM_HOSTS", "a.example.org,a.example.org,*", "upstream_hosts", ("a.example.org", "*")),
    ("CFDB_UPSTREAM_HOSTS", "data_dcc.example.org,203.0.113.7", "upstream_hosts",
     ("data_dcc.example.org", "203.0.113.7")),
]


@pytest.mark.parametrize(("variable", "value", "attribute", "expected"), OVERRIDES)
def test_each_variable_overrides_its_default(tmp_path, variable, value, attribute, expected):
    base = {"CFDB_DATA_DIR": str(tmp_path)}
    default = Settings.from_environ(base)

    settings = Settings.from_environ({**base, variable: value})

    assert getattr(settings, attribute) == expected
    others = {name for name in vars(default) if name != attribute}
    assert {n: getattr(settings, n) for n in others} == {n: getattr(default, n) for n in others}


def test_overriding_the_store_and_ledger_keeps_the_other_data_dir_defaults(tmp_path):
    settings = Settings.from_environ(
        {"CFDB_DATA_DIR": str(tmp_path), "CFDB_STORE": "/elsewhere", "CFDB_LEDGER_URL": "sqlite:///x.db"}
    )

    assert settings.catalog == str(tmp_path / "demo" / "catalog.jsonl")
    assert settings.work_dir == tmp_path / "work"


INVALID = [
    # (variable, value, text the message must contain)
    ("CFDB_THREADS", "abc", "'abc'"),
    ("CFDB_THREADS", "0", "'0'"),
    ("CFDB_THREADS", "65", "'65'"),
    ("CFDB_THREADS", "-1", "'-1'"),
    ("CFDB_THREADS", "2.5", "'2.5'"),
    ("CFDB_COMPRESSION_LEVEL", "12", "'12'"),
    ("CFDB_COMPRESSION_LEVEL", "-1", "'-1'"),
    ("CFDB_FAILURE_RETRY_S", "soon", "'soon'"),
    ("CFDB_FAILURE_RETRY_S", "-5", "'-5'"),
    ("CFDB_SORT_MEMORY", "lots", "'lots'"),
    ("CFDB_SORT_MEMORY", "512MB", "'512MB'"),
    ("CFDB_SORT_MEMORY", "1.5G", "'1.5G'"),
    ("CFDB_SORT_MEMORY", "G", "'G'"),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "maybe", "'maybe'"),
    ("CFDB_ALLOW_HTTP_LOOPBACK", "2", "'2'"),
    ("CFDB_DCCS", "encode,bad-name", "'bad-name'"),
    ("CFDB_DCCS", "encode,two words", "'two words'"),
    ("CFDB_DCCS", "../etc", "'../etc'"),
    ("CFDB_DCCS", "x" * 33, repr("x" * 33)),
    ("CFDB_UPSTREAM_HOSTS", "https://files.example.org", "'https://files.example.org'"),
    ("CFDB_UPSTREAM_HOSTS", "files.example.org:443", "'files.example.org:443'"),
    ("CFDB_UPSTREAM_HOSTS", "files.example.org/data", "'files.example.org/data'"),
    ("CFDB_UPSTREAM_HOSTS", "*.example.org", "'*.example.org'"),
    ("CFDB_UPSTREAM_HOSTS", "good.example.org, two words", "'two words'"),
    ("CFDB_UPSTREAM_HOSTS", "a..b", "'a..b'"),
    ("CFDB_UPSTREAM_HOSTS", ".", "'.'"),
]


@pytest.mark.parametrize(("variable", "value", "shown"), INVALID)
def test_invalid_values_raise_settings_error_naming_variable_and_value(tmp_path, variable, value, shown):
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path), variable: value})

    message = str(raised.value)
    assert variable in message
    assert shown in message


def test_the_default_upstream_hosts_are_the_dccs_own_hosts_from_the_reference():
    # The original service's outbound allowlist (reference §7) plus HuBMAP's DRS broker (§11.13).
    assert set(DEFAULT_UPSTREAM_HOSTS) == {
        "data.4dnucleome.org", "www.encodeproject.org", "encode-public.s3.amazonaws.com",
        "assets.hubmapconsortium.org", "drs.hubmapconsortium.org", "s3.amazonaws.com", ".s3.amazonaws.com",
        ".s3.us-east-1.amazonaws.com", ".s3.us-west-1.amazonaws.com", ".s3.us-west-2.amazonaws.com",
    }
    assert "*" not in DEFAULT_UPSTREAM_HOSTS


@pytest.mark.parametrize(("value", "hosts"), [(None, list(DEFAULT_UPSTREAM_HOSTS)), ("a.example.org,*", ["a.example.org", "*"])])
def test_the_fetcher_gets_the_upstream_hosts_and_the_loopback_switch(tmp_path, value, hosts):
    env = {"CFDB_DATA_DIR": str(tmp_path), "CFDB_ALLOW_HTTP_LOOPBACK": "true"}
    if value is not None:
        env["CFDB_UPSTREAM_HOSTS"] = value

    fetcher = adapters(Settings.from_environ(env)).fetcher

    assert fetcher.upstream_hosts == hosts and fetcher.allow_http_loopback is True


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


# --- the production guard --------------------------------------------------------------------------

PRODUCTION_OK = {
    "CFDB_PROFILE": "production",
    "CFDB_LEDGER_URL": "postgresql://cfdb@db.internal/cfdb",
    "CFDB_STORE": "s3://artifacts/cfdb",
    "CFDB_CATALOG": "mongodb://catalog.internal:27017",
}


def test_production_settings_that_share_everything_pass_and_refuse_file_urls_by_default():
    settings = Settings.from_environ(PRODUCTION_OK)

    settings.check()
    assert settings.profile == "production" and settings.allow_file_urls is False


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"CFDB_LEDGER_URL": ""}, "CFDB_LEDGER_URL"),
        ({"CFDB_LEDGER_URL": "sqlite:////tmp/ledger.db"}, "CFDB_LEDGER_URL"),
        ({"CFDB_STORE": "/var/lib/cfdb/artifacts"}, "CFDB_STORE"),
        ({"CFDB_STORE": ""}, "CFDB_STORE"),
        ({"CFDB_CATALOG": "/data/catalog.jsonl"}, "CFDB_CATALOG"),
        ({"CFDB_CATALOG": "file:///data/catalog.jsonl"}, "CFDB_CATALOG"),
        ({"CFDB_ALLOW_FILE_URLS": "true"}, "CFDB_ALLOW_FILE_URLS=false"),
        ({"CFDB_ALLOW_HTTP_LOOPBACK": "true"}, "CFDB_ALLOW_HTTP_LOOPBACK"),
    ],
    ids=["no-ledger", "sqlite-ledger", "local-store", "default-store", "catalog-file", "catalog-file-uri", "file-urls",
         "loopback"],
)
def test_production_refuses_each_local_only_setting_naming_the_variable(change, variable):
    settings = Settings.from_environ({**PRODUCTION_OK, **change})

    with pytest.raises(SettingsError, match="refuses to start") as caught:
        settings.check()
    assert variable in str(caught.value)


def test_a_closed_rig_that_reaches_only_this_machine_may_allow_loopback_in_production():
    rig = {**PRODUCTION_OK, "CFDB_ALLOW_HTTP_LOOPBACK": "true", "CFDB_UPSTREAM_HOSTS": "localhost"}
    Settings.from_environ(rig).check()
    with pytest.raises(SettingsError, match="CFDB_ALLOW_HTTP_LOOPBACK"):
        Settings.from_environ({**rig, "CFDB_UPSTREAM_HOSTS": "localhost,www.encodeproject.org"}).check()


def test_an_s3_catalog_snapshot_is_fine_in_production():
    Settings.from_environ({**PRODUCTION_OK, "CFDB_CATALOG": "s3://snapshots/catalog.jsonl"}).check()


def test_a_remote_run_launcher_in_the_instance_means_production(tmp_path):
    (tmp_path / "dagster.yaml").write_text(
        "run_launcher:\n  module: dagster_aws.ecs\n  class: EcsRunLauncher\n  config: {}\n"
    )
    settings = Settings.from_environ({"DAGSTER_HOME": str(tmp_path), "CFDB_DATA_DIR": str(tmp_path / "d")})

    assert settings.profile == "production"
    with pytest.raises(SettingsError, match="CFDB_LEDGER_URL"):
        settings.check()


@pytest.mark.parametrize("instance", [None, "telemetry:\n  enabled: false\n",
                                      "run_launcher:\n  module: dagster\n  class: DefaultRunLauncher\n"])
def test_the_embedded_instance_is_the_local_profile(tmp_path, instance):
    if instance is not None:
        (tmp_path / "dagster.yaml").write_text(instance)
    settings = Settings.from_environ({"DAGSTER_HOME": str(tmp_path), "CFDB_DATA_DIR": str(tmp_path / "d")})

    assert settings.profile == "local" and settings.allow_file_urls is True
    settings.check()


def test_an_unknown_profile_is_refused():
    with pytest.raises(SettingsError, match="CFDB_PROFILE='staging' is not a profile"):
        Settings.from_environ({"CFDB_PROFILE": "staging"})


def test_the_api_refuses_to_start_with_a_sentence_on_local_only_production_settings(tmp_path):
    env = {**os.environ, "CFDB_PROFILE": "production", "CFDB_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "import serve.asgi"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])

    assert proc.returncode == 1
    assert proc.stderr.startswith("cfdb-assets API cannot start: The production profile")
    assert "Traceback" not in proc.stderr and "CFDB_LEDGER_URL" in proc.stderr


def test_run_window_and_attempts_are_read_and_bounded():
    settings = Settings.from_environ({"CFDB_RUN_WINDOW": "64", "CFDB_MAX_ATTEMPTS": "5"})
    assert (settings.run_window, settings.max_attempts) == (64, 5)
    assert (Settings.from_environ({}).run_window, Settings.from_environ({}).max_attempts) == (16, 3)
    with pytest.raises(SettingsError, match="CFDB_RUN_WINDOW='0' is out of range"):
        Settings.from_environ({"CFDB_RUN_WINDOW": "0"})
