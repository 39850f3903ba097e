"""The domain event outbox, delivered by real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import transaction

from catalog import events
from catalog.models import DomainEvent, EventDelivery
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_an_event_is_recorded_with_one_delivery_per_subscribed_handler(tmp_path):
    with transaction.atomic():
        event = events.event_record(topic="probe.hello", payload={"log": str(tmp_path / "log")})
    assert [d.handler for d in event.deliveries.all()] == ["tests.probe.handlers.record_delivery"]
    # No handler subscribes to this topic: the event is kept, nothing is to deliver.
    with transaction.atomic():
        quiet = events.event_record(topic="nobody.listens", payload={})
    assert not quiet.deliveries.exists()


def test_a_handler_gets_only_the_events_it_wants_and_a_failing_test_never_fails_the_change():
    seen: list[str] = []

    def only_big(payload: dict) -> bool:
        if payload.get("size") == "broken":
            raise ValueError("no size")
        return payload["size"] > 10

    def on_sized(event) -> None:
        seen.append(event.payload["size"])

    events.subscribe("wants.sized", on_sized, wants=only_big)
    name = events.handler_name(on_sized)
    try:
        with transaction.atomic():
            small = events.event_record(topic="wants.sized", payload={"size": 3})
            big = events.event_record(topic="wants.sized", payload={"size": 30})
            broken = events.event_record(topic="wants.sized", payload={"size": "broken"})
        assert not small.deliveries.exists()  # recorded, with nothing to deliver
        assert [d.handler for d in big.deliveries.all()] == [name]
        assert [d.handler for d in broken.deliveries.all()] == [name]
    finally:
        events._subscriptions["wants.sized"].discard(name)
        events._wants.pop(("wants.sized", name), None)


def test_a_small_data_only_publish_is_delivered_only_to_the_handlers_with_work(
    settings, dataset, publish
):
    settings.COLUMNAR_COPY_MIN_BYTES = 1024 * 1024
    settings.OPENLINEAGE_URL = settings.OPENLINEAGE_FILE = ""
    publish(dataset, b"day,n\n2024-08-10,1\n")
    event = DomainEvent.objects.get(topic="version.published")
    handlers = sorted(d.handler.rsplit(".", 1)[0] for d in event.deliveries.all())
    # Not the columnar copy (too small), usage (not breaking) or OpenLineage (not set up).
    assert handlers == ["notifications.handlers", "replication.handlers"]


@pytest.mark.worker
def test_an_event_is_delivered_by_a_worker_after_commit(tmp_path, start_worker):
    start_worker()
    log = tmp_path / "log"
    with transaction.atomic():
        event = events.event_record(topic="probe.hello", payload={"log": str(log)})
    wait_for(
        lambda: EventDelivery.objects.filter(event=event, delivered_at__isnull=False).exists(),
        message="the delivery",
    )
    assert [line.split()[0] for line in log_lines(log)] == ["start", "done"]


@pytest.mark.worker
def test_a_worker_keeps_its_database_session_from_one_task_to_the_next(tmp_path, start_worker):
    start_worker()
    log = tmp_path / "log"
    for _ in range(3):  # three transactions: three tasks, one after the other
        with transaction.atomic():
            event = events.event_record(
                topic="probe.session", payload={"log": str(log), "database_session": True}
            )
        wait_for(
            lambda e=event: EventDelivery.objects.filter(
                event=e, delivered_at__isnull=False
            ).exists(),
            message="the delivery",
        )
    sessions = {line for line in log_lines(log) if line.startswith("session ")}
    # One connection for all three, not one opened for each task.
    assert len(sessions) == 1, sessions


@pytest.mark.worker
def test_an_event_recorded_in_a_transaction_that_rolls_back_is_never_delivered(
    tmp_path, start_worker
):
    start_worker()
    rolled_back, committed = tmp_path / "rolled-back", tmp_path / "committed"

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        events.event_record(topic="probe.rollback", payload={"log": str(rolled_back)})
        raise Abort
    # A committed event sent after it shows the worker is up and has drained the queue.
    with transaction.atomic():
        events.event_record(topic="probe.commit", payload={"log": str(committed)})
    wait_for(
        lambda: "done" in committed.read_text() if committed.exists() else False,
        message="the committed event",
    )
    events.events_deliver(delivery_ids=events.events_pending_ids())  # the sweeper, too

    assert not rolled_back.exists()
    assert not DomainEvent.objects.filter(topic="probe.rollback").exists()


@pytest.mark.worker
def test_an_event_is_delivered_after_its_worker_was_killed_before_acknowledging(
    tmp_path, start_worker
):
    worker = start_worker()
    log = tmp_path / "log"
    with transaction.atomic():
        event = events.event_record(
            topic="probe.slow", payload={"log": str(log), "sleep_first_time": 60}
        )
    wait_for(lambda: len(log_lines(log)) == 1, message="the handler to start")
    worker.kill()  # mid-handler: the delivery was claimed, never marked delivered
    delivery = EventDelivery.objects.get(event=event)
    assert delivery.delivered_at is None and delivery.attempts == 1

    start_worker()

    def sweep():
        # What the periodic sweeper does once the dead worker's lease has run out.
        from catalog.tasks import sweep_events

        sweep_events.delay()
        delivery.refresh_from_db()
        return delivery.delivered_at

    wait_for(sweep, timeout=60, interval=1, message="the redelivery")
    assert delivery.attempts == 2
    assert [line.split()[0] for line in log_lines(log)] == ["start", "start", "done"]


def test_a_failing_handler_is_retried_later_and_given_up_after_the_last_attempt(settings, tmp_path):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    with transaction.atomic():
        event = events.event_record(topic="probe.broken", payload={})  # no "log": KeyError
    delivery = event.deliveries.get()

    assert events.events_deliver(delivery_ids=[delivery.pk]) == 0
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.lease_until is not None
    assert "log" in delivery.last_error
    # Backed off: not pending until its lease has run out.
    assert delivery.pk not in events.events_pending_ids()

    EventDelivery.objects.filter(pk=delivery.pk).update(lease_until=None)
    events.events_deliver(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.failed_at is not None and delivery.attempts == 2
    assert delivery.pk not in events.events_pending_ids()


def test_a_handler_that_outlasts_the_lease_is_not_taken_by_the_sweeper_while_it_runs(
    tmp_path, settings
):
    """As a columnar copy of a large file would: the handler runs for three leases."""
    import threading

    assert settings.OUTBOX_LEASE_SECONDS == 3
    log = tmp_path / "log"
    with transaction.atomic():
        event = events.event_record(
            topic="probe.slow", payload={"log": str(log), "sleep_first_time": 9}
        )
    [delivery] = event.deliveries.all()
    worker = threading.Thread(target=events.events_deliver, kwargs={"delivery_ids": [delivery.pk]})
    worker.start()
    wait_for(lambda: log_lines(log), message="the handler to start")
    swept = 0
    while worker.is_alive():
        # What the periodic sweeper does, again and again while the handler runs.
        swept += events.events_deliver(delivery_ids=events.events_pending_ids())
        worker.join(0.5)
    assert swept == 0
    assert [line.split()[0] for line in log_lines(log)] == ["start", "done"]
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None and delivery.attempts == 1


def test_a_delivery_whose_claim_was_taken_over_is_not_marked_by_the_first_worker(tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    with transaction.atomic():
        event = events.event_record(topic="probe.x", payload={"log": str(tmp_path / "log")})
    [delivery] = event.deliveries.all()
    stale = events._claim(delivery.pk)
    EventDelivery.objects.filter(pk=delivery.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    fresh = events._claim(delivery.pk)
    assert (stale.attempts, fresh.attempts) == (1, 2)
    events._record_failure(stale, RuntimeError("late"))
    delivery.refresh_from_db()
    assert delivery.last_error == ""
    assert delivery.attempts == 2 and delivery.failed_at is None


@pytest.mark.both_modes
def test_the_deliveries_of_one_task_are_claimed_together_and_a_failure_holds_back_only_its_own(
    tmp_path, settings, django_assert_max_num_queries
):
    log = tmp_path / "log"
    with transaction.atomic():
        first = events.event_record(topic="probe.a", payload={"log": str(log)})
        broken = events.event_record(topic="probe.broken", payload={})  # no "log": KeyError
        last = events.event_record(topic="probe.b", payload={"log": str(log)})
    ids = [e.deliveries.get().pk for e in (first, broken, last)]
    # One claim for the three (an UPDATE that returns what it took, their rows), the
    # failure's backoff, one mark for the two delivered.
    with django_assert_max_num_queries(4):
        assert events.events_deliver(delivery_ids=ids) == 2
    handled = [line.split()[:2] for line in log_lines(log)]
    assert handled == [[step, str(e.pk)] for e in (first, last) for step in ("start", "done")]
    delivered = EventDelivery.objects.filter(pk__in=ids, delivered_at__isnull=False)
    assert sorted(delivered.values_list("pk", flat=True)) == [ids[0], ids[2]]
    failed = EventDelivery.objects.get(pk=ids[1])
    assert failed.attempts == 1 and "log" in failed.last_error
    assert failed.delivered_at is None and failed.lease_until is not None  # its backoff
    # Nothing delivered or backing off is taken again.
    assert events.events_deliver(delivery_ids=ids) == 0
    assert len(log_lines(log)) == 4
