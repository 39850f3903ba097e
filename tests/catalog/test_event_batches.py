"""The events one transaction records are sent to the broker in one task, after commit.

Read straight from the events queue in Redis (no worker runs in these tests), so what
is checked is exactly what a worker would receive.
"""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from catalog import events
from catalog.api.generations import GENERATION_KEY
from catalog.models import EventDelivery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def events_queue():
    """The deliveries of every `catalog.deliver_events` task waiting in the queue, as
    lists of ids, oldest first."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = settings.CELERY_QUEUES["events"]
    broker.delete(queue)

    def sent() -> list[list[int]]:
        tasks = []
        for raw in reversed(broker.lrange(queue, 0, -1)):  # LPUSHed: newest first
            message = json.loads(raw)
            if message["headers"]["task"] != "catalog.deliver_events":
                continue
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            tasks.append(args[0])
        return tasks

    yield sent
    broker.delete(queue)


def _ids(topic: str) -> list[int]:
    return sorted(EventDelivery.objects.filter(event__topic=topic).values_list("pk", flat=True))


def test_the_events_of_one_transaction_go_in_one_task_after_commit(tmp_path, events_queue):
    with transaction.atomic():
        events.event_record(topic="probe.one", payload={"log": str(tmp_path / "1")})
        events.event_record(topic="probe.two", payload={"log": str(tmp_path / "2")})
        assert events_queue() == []  # nothing before commit
    assert events_queue() == [_ids("probe.one") + _ids("probe.two")]


def test_each_transaction_gets_its_own_task(tmp_path, events_queue):
    with transaction.atomic():
        events.event_record(topic="probe.first", payload={"log": str(tmp_path / "1")})
    with transaction.atomic():
        events.event_record(topic="probe.second", payload={"log": str(tmp_path / "2")})
    events.event_record(topic="probe.autocommit", payload={"log": str(tmp_path / "3")})
    assert events_queue() == [_ids("probe.first"), _ids("probe.second"), _ids("probe.autocommit")]


def test_a_rolled_back_transaction_sends_nothing_and_leaves_no_batch_behind(tmp_path, events_queue):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        events.event_record(topic="probe.gone", payload={"log": str(tmp_path / "1")})
        raise Abort
    assert events_queue() == []
    with transaction.atomic():
        events.event_record(topic="probe.kept", payload={"log": str(tmp_path / "2")})
    assert events_queue() == [_ids("probe.kept")]


def test_events_after_a_rolled_back_savepoint_are_still_sent(tmp_path, events_queue):
    """The batch began in a savepoint that rolled back (its send was dropped with it):
    the events recorded after it get a send of their own."""
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            events.event_record(topic="probe.undone", payload={"log": str(tmp_path / "1")})
            raise RuntimeError
        events.event_record(topic="probe.after", payload={"log": str(tmp_path / "2")})
    assert _ids("probe.undone") == []
    assert events_queue() == [_ids("probe.after")]


def test_the_generation_moves_after_the_commit_of_a_transaction_with_events(tmp_path):
    with transaction.atomic():
        events.event_record(topic="probe.one", payload={"log": str(tmp_path / "1")})
        events.event_record(topic="probe.two", payload={"log": str(tmp_path / "2")})
        before_commit = cache.get(GENERATION_KEY)
    assert cache.get(GENERATION_KEY) == before_commit + 1
