"""Outbox delivery tasks. Thin: they pass ids to `catalog.events`."""

from __future__ import annotations

from celery import shared_task

from catalog import events, storage
from catalog.api.generations import generation_catch_up


@shared_task(name="catalog.deliver_events")
def deliver_events(delivery_ids: list[int]) -> int:
    return events.events_deliver(delivery_ids=delivery_ids)


@shared_task(name="catalog.sweep_events")
def sweep_events() -> int:
    """Delivers what the after-commit dispatch missed (broker down, worker killed), and
    moves the catalog generation if a bump was lost to a cache outage."""
    generation_catch_up()
    return events.events_deliver(delivery_ids=events.events_pending_ids())


@shared_task(name="catalog.prune_outbox")
def prune_outbox() -> int:
    """Deletes delivered events past their retention (OUTBOX_RETENTION_DAYS)."""
    return events.events_prune()


@shared_task(name="catalog.abort_abandoned_uploads")
def abort_abandoned_uploads() -> int:
    """Aborts uploads left unfinished longer than MULTIPART_ABANDON_HOURS."""
    return storage.uploads_abandoned_abort()
