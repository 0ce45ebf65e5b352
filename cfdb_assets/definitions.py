"""The Dagster code location: one factory call per DCC × family, merged, plus the sensors."""

from __future__ import annotations

import os

import dagster as dg

from cfdb_assets.assets import FamilyDefs, FamilySpec, Tools, build_family
from cfdb_assets.formats import PROCESSED_FAMILIES
from cfdb_assets.sensors import Policy, build_on_demand_sensor, build_run_status_sensors
from resources import Settings, adapters


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset and sensor uses, from one Settings."""
    return {**adapters(settings).as_resources(), "tools": Tools.from_settings(settings)}


def build_families(settings: Settings) -> list[FamilyDefs]:
    """One DCC × family definition set per served DCC and processed family."""
    return [build_family(FamilySpec(dcc, family)) for dcc in settings.dccs for family in PROCESSED_FAMILIES]


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster loads, for the given settings."""
    families = build_families(settings)
    policy = Policy(max_attempts=settings.max_attempts, run_window=settings.run_window)
    return dg.Definitions.merge(
        *(family.definitions for family in families),
        dg.Definitions(
            sensors=[build_on_demand_sensor(families, policy=policy), *build_run_status_sensors(policy=policy)],
            resources=build_resources(settings),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_environ(os.environ))
