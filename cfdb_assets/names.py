"""The names that cross a process boundary (the API, the sensors, the runs, the Dagster UI, tests),
each defined once. Pure: no Dagster, no Starlette."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ATTEMPT_TAG", "CACHE_KEY_TAG", "DCC_TAG", "FORMAT_TAG", "JOB_ID_TAG", "LOCAL_ID_TAG", "PERMANENT_KEY", "Stage", "family_name", "run_key"]

# Run tags: how a run is tied to its ledger job, and how an operator finds it in the UI.
JOB_ID_TAG = "cfdb/job_id"
ATTEMPT_TAG = "cfdb/attempt"  # the job's build attempt: a transient failure is retried as a new attempt
CACHE_KEY_TAG = "cfdb/cache_key"
DCC_TAG = "cfdb/dcc"
LOCAL_ID_TAG = "cfdb/local_id"
FORMAT_TAG = "cfdb/format"

# Failure metadata key: whether a build's failure recurs on the same bytes (set where it is raised).
PERMANENT_KEY = "cfdb/permanent"


class Stage(StrEnum):
    """The stages a job records as done (``stages_done`` of /jobs)."""

    DATA = "data"
    INDEX = "index"


def family_name(dcc: str, family: str) -> str:
    """The name of one DCC × family's partitions definition, job and asset group."""
    return f"{dcc}_{family}"


def run_key(job_id: str, attempt: int) -> str:
    """The sensor's run key of one attempt of a job: a new attempt is a new run (Dagster never runs
    a key twice, even after a failure)."""
    return f"{job_id}:{attempt}"
