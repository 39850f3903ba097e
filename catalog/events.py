"""The domain event outbox.

An app that knows something happened calls `event_record()` inside the transaction
that made the change. That writes a `DomainEvent` and one `EventDelivery` per handler
subscribed to its topic, so the event exists exactly when the change was committed. After
commit a Celery task delivers it; a periodic sweeper delivers whatever that task missed
(the broker was down, the worker died). A delivery is claimed by a conditional update
with a lease, renewed while its handler runs (a handler may outlast any fixed lease), so
two workers never run one handler for one event at the same time; it is marked delivered
only after its handler returned, and only under the claim: delivery is at least once,
and handlers are written to be idempotent. Delivered events are pruned after
OUTBOX_RETENTION_DAYS (`events_prune`).

Apps subscribe in their `AppConfig.ready()`, one line per handler:

    events.subscribe("version.published", handlers.on_version_published)

A handler that can tell from an event's payload alone that it has nothing to do says so
with `wants` (a cheap test of the payload: no query, no I/O); no delivery is recorded for
an event it does not want. A delivery costs a row, a claim, a lease and a mark, and a
small publish otherwise made as many deliveries that did nothing as ones that did work.
"""

from __future__ import annotations

import logging
import operator
import random
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import reduce

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from catalog.api.generations import generation_bump
from catalog.leases import LeaseKeeper
from catalog.models import DomainEvent, EventDelivery, Organization

logger = logging.getLogger(__name__)

Handler = Callable[[DomainEvent], None]

Wants = Callable[[dict], bool]

_handlers: dict[str, Handler] = {}
_subscriptions: dict[str, set[str]] = {}
_wants: dict[tuple[str, str], Wants] = {}


def handler_name(handler: Handler) -> str:
    return f"{handler.__module__}.{handler.__qualname__}"


def subscribe(topic: str, handler: Handler, *, wants: Wants | None = None) -> None:
    """Registers `handler` for `topic`; a topic ending in `.*` matches its prefix. With
    `wants(payload)`, only the events it is true for are delivered to the handler."""
    name = handler_name(handler)
    _handlers[name] = handler
    _subscriptions.setdefault(topic, set()).add(name)
    if wants is None:
        _wants.pop((topic, name), None)
    else:
        _wants[(topic, name)] = wants


def _wanted(pattern: str, name: str, payload: dict) -> bool:
    wants = _wants.get((pattern, name))
    if wants is None:
        return True
    try:
        return bool(wants(payload))
    except Exception:
        # Never a reason to fail the change being recorded: the handler decides.
        logger.exception("The delivery test of %s failed; delivering the event", name)
        return True


def _handlers_for(topic: str, payload: dict) -> list[str]:
    names: set[str] = set()
    for pattern, subscribed in _subscriptions.items():
        if pattern == topic or (pattern.endswith(".*") and topic.startswith(pattern[:-1])):
            names |= {name for name in subscribed if _wanted(pattern, name, payload)}
    return sorted(names)


class _Dispatch:
    """What one transaction recorded, sent once it commits: every delivery of its events
    in one task (a publish records several events; one task each cost a broker round
    trip and a task run each), and one move of the catalog generation."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self) -> None:
        if getattr(_batches, "current", None) is self:
            _batches.current = None
        generation_bump(after_commit=False)
        if self.ids:
            from catalog.queue import send_task

            send_task("catalog.deliver_events", self.ids)


_batches = threading.local()


def _open_batch() -> _Dispatch | None:
    """The current transaction's batch, while its after-commit send is still to come. A
    batch whose send was dropped (its transaction, or the savepoint it began in, rolled
    back) is not reused: events recorded after that start a batch of their own."""
    batch = getattr(_batches, "current", None)
    if batch is None:
        return None
    if any(func is batch for _, func, _ in transaction.get_connection().run_on_commit):
        return batch
    return None


def event_record(
    *, topic: str, payload: dict, organization: Organization | None = None
) -> DomainEvent:
    """Records an event in the current transaction; it is delivered after commit, with
    the transaction's other events, by one task."""
    event = DomainEvent.objects.create(topic=topic, payload=payload, organization=organization)
    # What the API shows may have changed with it: cached answers miss from now on (so
    # the transaction's own reads see it), and again after commit (by the batch).
    generation_bump(after_commit=False)
    deliveries = EventDelivery.objects.bulk_create(
        EventDelivery(event=event, handler=name) for name in _handlers_for(topic, payload)
    )
    batch = _open_batch()
    if batch is None:
        batch = _batches.current = _Dispatch()
        batch.ids.extend(d.pk for d in deliveries)
        # Outside a transaction this runs at once; inside, after commit.
        transaction.on_commit(batch)
    else:
        batch.ids.extend(d.pk for d in deliveries)
    return event


def _claim(delivery_id: int) -> EventDelivery | None:
    claimed = _claim_all([delivery_id])
    return claimed[0] if claimed else None


def _claim_all(delivery_ids: list[int]) -> list[EventDelivery]:
    """Claims every delivery of `delivery_ids` that is neither done nor held by a live
    lease, in one UPDATE that says which rows it took and with which attempt (its claim);
    returns them (their events loaded), in the order asked. A task delivers every event
    of a transaction (a publish: three deliveries), and a claim each cost two queries."""
    if not delivery_ids:
        return []
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    adapt = connection.ops.adapt_datetimefield_value
    table = connection.ops.quote_name(EventDelivery._meta.db_table)
    marks = ", ".join(["%s"] * len(delivery_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET lease_until = %s, attempts = attempts + 1 "
            f"WHERE id IN ({marks}) AND delivered_at IS NULL AND failed_at IS NULL "
            "AND (lease_until IS NULL OR lease_until < %s) RETURNING id, attempts",
            [adapt(lease), *delivery_ids, adapt(now)],
        )
        attempts = dict(cursor.fetchall())
    if not attempts:
        return []
    loaded = EventDelivery.objects.select_related("event").in_bulk(list(attempts))
    claimed = []
    for delivery_id in dict.fromkeys(delivery_ids):
        if delivery_id in attempts and delivery_id in loaded:
            delivery = loaded[delivery_id]
            delivery.attempts = attempts[delivery_id]  # the claim, whatever was read since
            claimed.append(delivery)
    return claimed


def _mine(delivery: EventDelivery):
    """The delivery, only while this worker's claim (the attempt it took) holds."""
    return _all_mine([delivery])


def _all_mine(deliveries: list[EventDelivery]):
    """Those of `deliveries` whose claim (the attempt this worker took) still holds."""
    claims = [Q(pk=d.pk, attempts=d.attempts) for d in deliveries]
    if not claims:
        return EventDelivery.objects.none()
    return EventDelivery.objects.filter(reduce(operator.or_, claims), delivered_at__isnull=True)


def _lease_kept(deliveries: list[EventDelivery]) -> LeaseKeeper:
    """Renews the leases of `deliveries` (the caller takes out those it is done with)
    while their handlers run (a columnar copy of a large file can take longer than any
    fixed lease), fenced by the claims."""

    def renew() -> bool:
        lease = timezone.now() + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
        return bool(_all_mine(list(deliveries)).update(lease_until=lease))

    return LeaseKeeper(
        renew,
        every=settings.OUTBOX_LEASE_SECONDS / 3,
        name=f"{len(deliveries)} event deliveries from {deliveries[0].pk}",
    )


def events_deliver(*, delivery_ids: Iterable[int]) -> int:
    """Runs the handler of each delivery that is not taken; returns how many succeeded.

    The deliveries are claimed together and their leases renewed while their handlers
    run, one after the other, so only a worker that died loses them; what the worker
    records afterwards (delivered, or a failure) is fenced by each claim, so a worker
    that lost one changes nothing on it. Those whose handler returned are marked
    delivered together at the end (a worker killed before that runs them again: delivery
    is at least once)."""
    claimed = _claim_all(list(delivery_ids))
    if not claimed:
        return 0
    held = list(claimed)  # renewed until marked; a failure's backoff is its own lease
    handled = []
    with _lease_kept(held):
        for delivery in claimed:
            handler = _handlers.get(delivery.handler)
            if handler is None:
                held.remove(delivery)
                # The handler was unsubscribed since: nobody is left to take this event.
                _mine(delivery).update(
                    failed_at=timezone.now(), last_error="No such handler is registered any more."
                )
                continue
            try:
                handler(delivery.event)
            except Exception as exc:
                logger.exception("Handler %s failed on %s", delivery.handler, delivery.event)
                held.remove(delivery)
                _record_failure(delivery, exc)
                continue
            handled.append(delivery)
    if not handled:
        return 0
    return _all_mine(handled).update(delivered_at=timezone.now(), lease_until=None, last_error="")


def _record_failure(delivery: EventDelivery, exc: Exception) -> None:
    if delivery.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        _mine(delivery).update(
            failed_at=timezone.now(), lease_until=None, last_error=str(exc)[:2000]
        )
        return
    # Exponential backoff with jitter: the sweeper picks it up once the lease runs out.
    delay = min(3600, 2**delivery.attempts) * (0.5 + random.random())
    _mine(delivery).update(
        lease_until=timezone.now() + timedelta(seconds=delay), last_error=str(exc)[:2000]
    )


def events_pending_ids(*, limit: int = 500) -> list[int]:
    """Deliveries that are neither done nor held by a live lease."""
    now = timezone.now()
    return list(
        EventDelivery.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            delivered_at__isnull=True,
            failed_at__isnull=True,
        )
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def events_prune(*, older_than: timedelta | None = None, batch: int = 1000) -> int:
    """Deletes events older than OUTBOX_RETENTION_DAYS (or `older_than`) whose every
    delivery is done, with those deliveries; returns how many events. An event still
    waiting for a handler, or whose delivery failed for good (an operator looks at
    those), is kept whatever its age. The audit log is another table and stays."""
    age = older_than if older_than is not None else timedelta(days=settings.OUTBOX_RETENTION_DAYS)
    cutoff = timezone.now() - age
    undelivered = EventDelivery.objects.filter(event=OuterRef("pk"), delivered_at__isnull=True)
    prunable = DomainEvent.objects.filter(created_at__lt=cutoff).exclude(Exists(undelivered))
    pruned = 0
    # In batches: a backlog of millions never becomes one long transaction.
    while ids := list(prunable.order_by("id").values_list("id", flat=True)[:batch]):
        with transaction.atomic():
            EventDelivery.objects.filter(event_id__in=ids).delete()
            pruned += (
                DomainEvent.objects.filter(id__in=ids).delete()[1].get(DomainEvent._meta.label, 0)
            )
    return pruned
