"""The Dagster code location: one factory call per DCC × family, merged, plus the sensors."""

from __future__ import annotations

import os

import dagster as dg

from cfdb_assets.assets import FamilySpec, Tools, build_family
from cfdb_assets.formats import PROCESSED_FAMILIES
from cfdb_assets.sensors import build_on_demand_sensor, build_run_status_sensors
from resources import Settings
from resources.wiring import adapters


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset and sensor uses, from one Settings."""
    return {
        **adapters(settings),
        "tools": Tools(
            work_dir=str(settings.work_dir),
            threads=settings.threads,
            sort_memory=settings.sort_memory,
            compression_level=settings.compression_level,
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster loads, for the given settings."""
    families = [build_family(FamilySpec(dcc, family)) for dcc in settings.dccs for family in PROCESSED_FAMILIES]
    merged = dg.Definitions.merge(*families)
    jobs = list(merged.jobs or [])
    return dg.Definitions.merge(
        merged,
        dg.Definitions(
            sensors=[build_on_demand_sensor(jobs), *build_run_status_sensors()],
            resources=build_resources(settings),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_environ(os.environ))
