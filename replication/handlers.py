"""Replication's reactions to versioning's events (registered in apps.py).

Idempotent, as the outbox requires: planning a version that is already queued or
verified in a region queues nothing again.
"""

from __future__ import annotations

from catalog.models import DomainEvent
from replication.models import Policy
from replication.services import version_replicate_by_rules


def on_version_published(event: DomainEvent) -> None:
    """The new current version goes to every target of the immediate rules."""
    _replicate(event)


def on_version_rolled_back(event: DomainEvent) -> None:
    """The version made current again must exist in every target too (it may have
    expired there, or predate the rule)."""
    _replicate(event)


def _replicate(event: DomainEvent) -> None:
    version_replicate_by_rules(
        version_id=event.payload["version_id"],
        policies=(Policy.IMMEDIATE,),
        organization_id=event.organization_id,
    )
