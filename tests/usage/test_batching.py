"""A web process pushes its usage events to Redis in batches: a request never waits for
the push, every event arrives within the batch's bound without anyone asking, and a
process that exits normally pushes what it still holds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from django.conf import settings

from tests.conftest import wait_for
from tests.usage.conftest import SCRIPT
from usage.models import UsageEvent
from usage.services import buffer
from usage.services.ingest import events_ingest

pytestmark = pytest.mark.django_db

DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"


def buffered() -> int:
    return buffer.redis_client().llen(buffer.buffer_key())


def test_events_reach_redis_within_the_batch_bound_without_being_asked(published, viewer, as_user):
    client = as_user(viewer)
    started = time.monotonic()
    for _ in range(5):
        assert client.get(DOWNLOAD, HTTP_USER_AGENT=SCRIPT).status_code == 200

    wait_for(lambda: buffered() == 5, timeout=5, interval=0.02, message="the batch in Redis")
    # Pushed by the process's own thread, no later than the bound after the first event.
    assert time.monotonic() - started < buffer.BATCH_SECONDS + 2
    assert events_ingest().written == 5
    assert UsageEvent.objects.filter(kind="download", status=200).count() == 5


@pytest.fixture
def long_bound(monkeypatch):
    """Batches wait 30 s unless full; afterwards the batch thread is woken from that
    wait, so the next test sees the usual bound."""
    monkeypatch.setattr(buffer, "BATCH_SECONDS", 30.0)
    yield
    monkeypatch.undo()
    buffer._batch.full.set()


def test_a_full_batch_is_pushed_before_the_bound(
    published, viewer, as_user, monkeypatch, long_bound
):
    monkeypatch.setattr(buffer, "BATCH_EVENTS", 3)
    client = as_user(viewer)
    for _ in range(3):
        client.get(DOWNLOAD, HTTP_USER_AGENT=SCRIPT)
    wait_for(lambda: buffered() == 3, timeout=5, interval=0.02, message="the full batch")


def test_the_ingest_pushes_its_own_processs_batch_first(published, viewer, as_user, long_bound):
    client = as_user(viewer)
    client.get(DOWNLOAD, HTTP_USER_AGENT=SCRIPT)
    client.get(DOWNLOAD, HTTP_USER_AGENT=SCRIPT)

    assert events_ingest().written == 2


def test_a_process_that_exits_normally_pushes_the_events_it_still_holds(tmp_path):
    key = f"{settings.USAGE_BUFFER_KEY}-exit-{uuid.uuid4().hex}"
    program = textwrap.dedent(
        """
        import time, uuid
        import django
        django.setup()
        from usage.services import buffer
        buffer.BATCH_SECONDS = 3600  # only the exit can push them
        for i in range(25):
            buffer.record_append({"id": uuid.uuid4().hex, "t": time.time(), "kind": "detail",
                                  "status": 200, "ua": "exit-test", "client": f"c{i}"})
        """
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path),
        "USAGE_REDIS_URL": settings.USAGE_REDIS_URL,
        "USAGE_BUFFER_KEY": key,
    }
    client = buffer.redis_client()
    try:
        subprocess.run(
            [sys.executable, "-c", program],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
        )
        # In Redis, or (when Redis did not answer within the exit's short connect
        # timeout, as on a loaded machine) in the spool the ingest replays: none lost.
        spooled = sum(
            len(path.read_text().splitlines()) for path in tmp_path.glob("usage-spool/*.tsv")
        )
        assert client.llen(key) + spooled == 25
    finally:
        client.delete(key)


def test_batch_after_batch_reaches_redis_within_the_bound(published, viewer, as_user):
    # The pushing thread is woken by each batch's first event, also after it has pushed.
    client = as_user(viewer)
    for expected in (2, 4, 6):
        started = time.monotonic()
        for _ in range(2):
            assert client.get(DOWNLOAD, HTTP_USER_AGENT=SCRIPT).status_code == 200
        wait_for(lambda n=expected: buffered() == n, timeout=5, interval=0.02, message="batch")
        assert time.monotonic() - started < buffer.BATCH_SECONDS + 2


def test_no_event_is_lost_while_threads_add_and_the_batch_is_pushed(monkeypatch):
    # Small batches, so that full wake-ups happen while other threads add; each round
    # starts on an empty batch, so its first events race for the first-event wake-up.
    monkeypatch.setattr(buffer, "BATCH_EVENTS", 7)
    threads, rounds, each = 8, 5, 50
    start = threading.Barrier(threads)

    def add(worker: int, round_no: int) -> None:
        start.wait(timeout=10)
        for i in range(each):
            buffer.record_append(
                {
                    "id": uuid.uuid4().hex,
                    "t": time.time(),
                    "kind": "detail",
                    "status": 200,
                    "client": f"t{worker}-{round_no}-{i}",
                }
            )

    for round_no in range(rounds):
        workers = [threading.Thread(target=add, args=(n, round_no)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        total = threads * each * (round_no + 1)
        wait_for(lambda n=total: buffered() == n, timeout=10, interval=0.05, message="the round")
    lines = buffer.redis_client().lrange(buffer.buffer_key(), 0, -1)
    assert len(set(lines)) == threads * each * rounds
