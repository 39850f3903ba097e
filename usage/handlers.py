"""Outbox handlers of the usage app. Idempotent: delivery is at least once."""

from __future__ import annotations

from catalog.models import DomainEvent
from usage.services.alerts import breaking_change_consumers_record
from versioning.models import DatasetVersion


def is_breaking(payload: dict) -> bool:
    return bool(payload.get("breaking"))


def on_version_published(event: DomainEvent) -> None:
    """A breaking version: tell who read the major it replaces (notifications asks).
    Delivered only for breaking versions (`is_breaking`)."""
    if not is_breaking(event.payload):
        return
    version = (
        DatasetVersion.objects.select_related("dataset__organization", "parent")
        .filter(pk=event.payload.get("version_id"))
        .first()
    )
    if version is not None:
        breaking_change_consumers_record(version=version)
