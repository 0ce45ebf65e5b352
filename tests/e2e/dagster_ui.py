"""The Dagster webserver's GraphQL API, driven as its UI drives it: launch a job from the
launchpad, launch a backfill of a partition set, add a dynamic partition, wait for a run."""

from __future__ import annotations

import httpx

from tests.helpers import wait_until

__all__ = ["add_partition", "answers", "backfill", "launch"]

LOCATION = "cfdb_assets"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
LAUNCH = """mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""
ADD_PARTITION = """mutation($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) { __typename }
}"""
RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""
ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def graphql(ui: httpx.Client, query: str, variables: dict) -> dict:
    body = ui.post("/graphql", json={"query": query, "variables": variables}).json()
    assert "errors" not in body, body
    return body["data"]


def answers(ui: httpx.Client) -> bool:
    """Whether the webserver is up (scripts/run.sh waits for the API only)."""
    try:
        return ui.get("/server_info").status_code == 200
    except httpx.TransportError:
        return False


def launch(ui: httpx.Client, job: str, run_config: dict, timeout_s: float = 300) -> tuple[str, str]:
    """Launch ``job`` as the launchpad does; (run id, its final status)."""
    launched = graphql(ui, LAUNCH, {"params": {"selector": {**REPOSITORY, "jobName": job},
                                               "runConfigData": run_config}})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def status() -> str | None:
        found = graphql(ui, RUN_STATUS, {"id": run_id})["runOrError"].get("status")
        return found if found in ENDED else None

    return run_id, wait_until(status, f"run {run_id} of {job} ends", timeout_s)


def backfill(ui: httpx.Client, job: str, partitions: list[str] | None = None) -> str:
    """A backfill of a family job's partitions (all of them when ``partitions`` is None)."""
    selection = {"allPartitions": True} if partitions is None else {"partitionNames": partitions}
    launched = graphql(ui, BACKFILL, {"params": {
        "selector": {"partitionSetName": f"{job}_partition_set", "repositorySelector": REPOSITORY}, **selection}})
    result = launched["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def add_partition(ui: httpx.Client, partitions_def: str, key: str) -> None:
    added = graphql(ui, ADD_PARTITION, {"repo": REPOSITORY, "name": partitions_def, "key": key})
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added
