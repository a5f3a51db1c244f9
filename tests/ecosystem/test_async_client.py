"""The asyncio client (conveyor.aio) does what the sync client (conveyor.jobs) does: the same
functions and signatures, the same answers and the same typed exceptions, on real PostgreSQL.
Each behaviour test runs once per client through the `client` fixture."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import pytest

import conveyor
from conveyor import aio
from conveyor import jobs as sync_jobs
from conveyor.errors import ConfigError, Disabled, InvalidInput, LeaseLost, Refused
from ecosystem.support import Client
from helpers import scalar, unique


def _client_functions() -> list[str]:
    """The sync client's calls: functions of conveyor.jobs that take the caller's connection."""
    return sorted(
        name
        for name, function in inspect.getmembers(sync_jobs, inspect.isfunction)
        if function.__module__ == sync_jobs.__name__
        and next(iter(inspect.signature(function).parameters), None) == "conn"
    )


def _status(client: Client, job_id: int) -> str:
    return str(
        scalar(client.sync, "SELECT status FROM conveyor.job_queue WHERE id = %s", (job_id,))
    )


def test_every_sync_client_function_has_an_async_twin_with_the_same_signature() -> None:
    names = _client_functions()
    assert {"enqueue", "enqueue_many", "claim", "complete", "cancel", "extend_lease"} <= set(names)
    for name in names:
        twin = getattr(aio, name, None)
        assert twin is not None and inspect.iscoroutinefunction(twin), name
        sync_parameters = list(inspect.signature(getattr(sync_jobs, name)).parameters.values())
        async_parameters = list(inspect.signature(twin).parameters.values())
        assert [(p.name, p.kind, p.default, p.annotation) for p in sync_parameters[1:]] == [
            (p.name, p.kind, p.default, p.annotation) for p in async_parameters[1:]
        ], name
        assert async_parameters[0].annotation == "AsyncConn", name
        sync_return = inspect.signature(getattr(sync_jobs, name)).return_annotation
        assert inspect.signature(twin).return_annotation == sync_return, name


def test_enqueue_claim_extend_complete_runs_one_job_to_success(client: Client) -> None:
    queue = unique("q")
    job_id = client.enqueue("demo.echo", {"n": 1}, queue=queue, priority=3)

    [job] = client.claim("w1", queues=[queue], lease_seconds=30)
    extended = client.extend_lease(job.job_id, job.lease_token, 60)
    client.complete(job.job_id, job.lease_token, {"done": True})

    assert (job.job_id, job.kind, job.payload, job.priority) == (job_id, "demo.echo", {"n": 1}, 3)
    assert job.lease_seconds == pytest.approx(30, abs=1)
    assert extended["ok"] is True and extended["cancel_requested"] is False
    assert _status(client, job_id) == "succeeded"


def test_enqueue_with_a_live_idempotency_key_returns_the_same_job(client: Client) -> None:
    queue, key = unique("q"), unique("key")
    first = client.enqueue("demo.echo", queue=queue, idempotency_key=key)
    assert client.enqueue("demo.echo", queue=queue, idempotency_key=key) == first


def test_enqueue_many_returns_ids_in_order_and_complete_many_splits_lost_leases(
    client: Client,
) -> None:
    queue = unique("q")
    ids = client.enqueue_many([{"kind": "a", "queue": queue, "priority": i} for i in range(3)])
    claimed = client.claim("w1", queues=[queue], batch=3)
    stale = (claimed[0].job_id, uuid.uuid4())

    completed, lost = client.complete_many(
        [(j.job_id, j.lease_token) for j in claimed[1:]] + [stale]
    )

    assert client.enqueue_many([]) == []
    assert sorted(ids) == sorted(j.job_id for j in claimed) and len(set(ids)) == 3
    assert sorted(completed) == sorted(j.job_id for j in claimed[1:])
    assert lost == [claimed[0].job_id]


def test_fail_transient_requeues_and_fail_permanent_dead_letters(client: Client) -> None:
    queue = unique("q")
    first = client.enqueue("demo.echo", queue=queue, max_attempts=5)
    [job] = client.claim("w1", queues=[queue])
    requeued = client.fail_transient(job.job_id, job.lease_token, "boom", retry_in_seconds=0)
    [again] = client.claim("w1", queues=[queue])
    dead = client.fail_permanent(again.job_id, again.lease_token, "broken")

    assert requeued["status"] == "queued" and again.job_id == first and again.attempts == 2
    assert dead["status"] == "dead_letter"
    assert (
        scalar(
            client.sync,
            "SELECT count(*) FROM conveyor.job_dead_letter WHERE id = %s",
            (dead["dead_letter_id"],),
        )
        == 1
    )


def test_snooze_and_release_give_the_job_back_without_spending_an_attempt(client: Client) -> None:
    queue = unique("q")
    job_id = client.enqueue("demo.echo", queue=queue)
    [job] = client.claim("w1", queues=[queue])
    client.release(job.job_id, job.lease_token)
    [again] = client.claim("w1", queues=[queue])
    snoozed = client.snooze(again.job_id, again.lease_token, 3600)

    assert again.job_id == job_id and again.attempts == job.attempts
    assert snoozed["ok"] is True and client.claim("w1", queues=[queue]) == []


def test_cancel_a_running_job_then_acknowledge_it(client: Client) -> None:
    queue = unique("q")
    running = client.enqueue("demo.echo", queue=queue)
    [job] = client.claim("w1", queues=[queue], batch=1)
    queued = client.enqueue("demo.echo", queue=queue)
    requested = client.cancel(running, "user asked")
    extended = client.extend_lease(job.job_id, job.lease_token)
    acked = client.cancel_ack(job.job_id, job.lease_token)

    assert job.job_id == running
    assert client.cancel(queued)["status"] == "cancelled"
    assert requested["status"] == "cancel_requested" and extended["cancel_requested"] is True
    assert acked["status"] == "cancelled" and _status(client, running) == "cancelled"


def test_a_stale_lease_token_raises_lease_lost(client: Client) -> None:
    queue = unique("q")
    client.enqueue("demo.echo", queue=queue)
    [job] = client.claim("w1", queues=[queue])

    with pytest.raises(LeaseLost) as lost:
        client.complete(job.job_id, uuid.uuid4())
    assert lost.value.reason == "lease_lost"
    with pytest.raises(LeaseLost):
        client.extend_lease(job.job_id, uuid.uuid4())


def test_the_substrate_switched_off_raises_disabled(client: Client) -> None:
    client.set_autocommit(False)
    client.execute(
        "UPDATE conveyor.dot_config SET value = 'false' WHERE key = 'queue.job_substrate.enabled'"
    )
    try:
        with pytest.raises(Disabled) as disabled:
            client.enqueue("demo.echo")
        assert isinstance(disabled.value, Refused)
        assert disabled.value.reason == "job_substrate_disabled"
    finally:
        client.rollback()


def test_a_bad_argument_raises_invalid_input_with_the_database_hint(client: Client) -> None:
    with pytest.raises(InvalidInput) as invalid:
        client.enqueue("", {})
    assert "kind" in str(invalid.value)


def test_aconnect_opens_an_async_connection_and_explains_an_unreachable_server(
    substrate_dsn: str,
) -> None:
    async def scenario() -> Any:
        async with await conveyor.aconnect(substrate_dsn, autocommit=True) as conn:
            cursor = await conn.execute("SELECT 41 + 1")
            return await cursor.fetchone()

    assert asyncio.run(scenario()) == (42,)
    with pytest.raises(ConfigError, match=r"cannot connect to .*port=1.*Connection refused"):
        asyncio.run(conveyor.aconnect("postgresql://nobody@127.0.0.1:1/none"))
