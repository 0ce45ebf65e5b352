"""What ECS says of the tasks of runs that are still starting (PROVISIONING, PENDING, ACTIVATING...),
so ``/jobs`` can tell a user their build is waiting for Fargate, as the original service's
"provisioning"/"pending" progress did. One DescribeTasks per cluster per sensor tick, for the runs
in STARTING only; best effort: without ECS (the local launcher) or its permission, nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import dagster as dg

__all__ = ["task_states"]

LOG = logging.getLogger("cfdb.ecs_status")
DESCRIBE_LIMIT = 100  # ARNs per DescribeTasks call


def task_states(records: Iterable[dg.RunRecord]) -> dict[str, str]:
    """Task ARN → ECS lastStatus, for the given runs that are STARTING on an ECS task."""
    by_cluster: dict[str, list[str]] = {}
    for record in records:
        tags = record.dagster_run.tags
        if record.dagster_run.status == dg.DagsterRunStatus.STARTING and "ecs/task_arn" in tags and "ecs/cluster" in tags:
            by_cluster.setdefault(tags["ecs/cluster"], []).append(tags["ecs/task_arn"])
    if not by_cluster:
        return {}
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    states: dict[str, str] = {}
    try:
        ecs = boto3.client("ecs")
        for cluster, arns in by_cluster.items():
            for start in range(0, len(arns), DESCRIBE_LIMIT):
                found = ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + DESCRIBE_LIMIT])
                states.update({task["taskArn"]: task["lastStatus"] for task in found.get("tasks", [])})
    except (BotoCoreError, ClientError) as exc:
        LOG.warning("Cannot describe the ECS tasks of starting runs: %s", exc)
    return states
