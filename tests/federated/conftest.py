"""Flower messages built outside a run need a task identity (a run sets it itself)."""

import pytest


@pytest.fixture(autouse=True)
def _flower_task_identity():
    flwr = pytest.importorskip("flwr")
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield flwr
