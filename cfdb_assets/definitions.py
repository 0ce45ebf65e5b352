"""The Dagster code location: one factory call per DCC × family, merged, plus the sensors."""

from __future__ import annotations

import os
from collections.abc import Callable

import dagster as dg

from cfdb_assets.assets import FamilyDefs, FamilySpec, Tools, build_family
from cfdb_assets.formats import PROCESSED_FAMILIES
from cfdb_assets.planning import OutputOptions
from cfdb_assets.housekeeping import build_housekeeping
from cfdb_assets.registration import build_registration
from cfdb_assets.names import CACHE_KEY_TAG, DCC_TAG, FORMAT_TAG, LOCAL_ID_TAG
from cfdb_assets.sensors import Policy, build_on_demand_sensor, build_run_status_sensors
from cfdb_assets.sizing import size_run
from resources import Ledger, Settings, adapters

# A sensor tick that finds no request listens this long for one (cfdb_assets.sensors.Policy): under
# the daemon's 5 s sensor loop, so the next tick still starts on time.
SENSOR_LISTEN_S = 4.0


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset and sensor uses, from one Settings."""
    return {**adapters(settings).as_resources(), "tools": Tools.from_settings(settings)}


def build_families(settings: Settings) -> list[FamilyDefs]:
    """One DCC × family definition set per served DCC and processed family."""
    tags = partition_run_tags(settings, adapters(settings).ledger)
    return [build_family(FamilySpec(dcc, family), tags, settings.api_url)
            for dcc in settings.dccs for family in PROCESSED_FAMILIES]


def partition_run_tags(settings: Settings, ledger: Ledger) -> Callable[[str], dict[str, str]]:
    """The tags of every run of a partition, from its source in the ledger: the file (so the UI finds
    a run by accession) and its worker size. A partition the ledger lacks gets none; its run fails
    with a sentence saying how to register it. A ledger outage fails the launch, to be retried,
    rather than start a run on a worker of the wrong size."""

    def tags(cache_key: str) -> dict[str, str]:
        source = ledger.source(cache_key)
        if source is None:
            return {}
        return {
            CACHE_KEY_TAG: cache_key,
            DCC_TAG: source.dcc,
            LOCAL_ID_TAG: source.local_id,
            FORMAT_TAG: source.format,
            **size_run(source.family, source.size).tags(fargate=settings.sized_runs),
        }

    return tags


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster loads, for the given settings."""
    families = build_families(settings)
    policy = Policy(max_attempts=settings.max_attempts, run_window=settings.run_window,
                    sized_runs=settings.sized_runs, listen_s=SENSOR_LISTEN_S)
    options = OutputOptions.from_settings(settings)
    register_catalog, daily = build_registration(list(settings.dccs), options)
    housekeeping, nightly = build_housekeeping(list(settings.dccs), options)
    return dg.Definitions.merge(
        *(family.definitions for family in families),
        dg.Definitions(
            jobs=[register_catalog, housekeeping],
            schedules=[daily, nightly],
            sensors=[build_on_demand_sensor(families, policy=policy), *build_run_status_sensors(policy=policy)],
            resources=build_resources(settings),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_environ(os.environ))
