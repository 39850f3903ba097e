"""Outbox handlers of the usage app. Idempotent: delivery is at least once."""

from __future__ import annotations

from catalog.models import DomainEvent
from usage.services.alerts import breaking_change_consumers_record
from versioning.models import DatasetVersion


def on_version_published(event: DomainEvent) -> None:
    """A breaking version: tell who read the major it replaces (notifications asks)."""
    if not event.payload.get("breaking"):
        return
    version = (
        DatasetVersion.objects.select_related("dataset__organization", "parent")
        .filter(pk=event.payload.get("version_id"))
        .first()
    )
    if version is not None:
        breaking_change_consumers_record(version=version)
