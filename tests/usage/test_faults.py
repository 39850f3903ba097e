"""Faults on the recording path with real workers: a worker killed in the middle of a
batch loses nothing and doubles nothing."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from django.conf import settings

from catalog.queue import send_task
from tests.conftest import wait_for
from tests.usage.conftest import BROWSER
from usage.models import DatasetDay, RollupDue, UsageEvent
from usage.services import buffer, lines

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

EVENTS = 500


def _buffered(dataset) -> None:
    client = buffer.redis_client()
    now = time.time()
    encoded = [
        lines.encode(
            {
                "id": uuid.uuid4().hex,
                "t": now - i,
                "organization": dataset.organization_id,
                "dataset": dataset.pk,
                "kind": "download",
                "status": 200,
                "ua": BROWSER,
                "client": f"fault-{i}",
            }
        )
        for i in range(EVENTS)
    ]
    client.rpush(buffer.buffer_key(), *encoded)


def ours() -> int:
    """This test's events in the log (another test's late event may pass through too)."""
    return UsageEvent.objects.filter(client__startswith="fault-").count()


def buffered() -> int:
    waiting = buffer.redis_client().lrange(buffer.buffer_key(), 0, -1)
    return sum(b"\tfault-" in line for line in waiting)


def _connect() -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=False
    )


def _waiting_on_a_lock(conn: psycopg.Connection) -> bool:
    """Whether an ingest is held at the rollup marks (another task's wait does not count)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
            "AND query ILIKE '%%usage_rollupdue%%'"
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(published, start_worker):
    _buffered(published)
    # Hold the rollup marks' table: the worker's batch is copied in, then waits there,
    # inside its transaction, until it is killed.
    blocker = _connect()
    blocker.execute("LOCK TABLE usage_rollupdue IN ACCESS EXCLUSIVE MODE")
    watcher = _connect()
    watcher.autocommit = True
    try:
        worker = start_worker()
        send_task("usage.ingest")
        wait_for(lambda: _waiting_on_a_lock(watcher), timeout=60, message="the batch to wait")
        worker.kill()
        blocker.rollback()
        wait_for(lambda: not _waiting_on_a_lock(watcher), timeout=30, message="the dead backend")
    finally:
        blocker.close()
        watcher.close()

    assert ours() == 0  # the killed batch never committed
    assert buffered() == EVENTS  # and is still there

    start_worker()

    def ingested():
        send_task("usage.ingest")  # the dead worker's lease runs out after a few seconds
        return ours() == EVENTS

    wait_for(ingested, timeout=60, interval=1, message="the batch after the crash")
    assert buffered() == 0
    send_task("usage.ingest")
    send_task("usage.rollup")
    wait_for(lambda: not RollupDue.objects.exists(), timeout=60, message="the rollup")
    assert ours() == EVENTS
    downloads = UsageEvent.objects.filter(dataset=published, kind="download", status=200)
    assert sum(DatasetDay.objects.values_list("downloads", flat=True)) == downloads.count()
