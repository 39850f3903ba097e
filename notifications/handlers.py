"""The outbox topics notifications reacts to, one handler each kind.

Handlers are idempotent (the outbox delivers at least once): the deliveries they write
have unique keys, so a second run of the same event adds nothing.
"""

from __future__ import annotations

from catalog.models import DomainEvent
from notifications.services import breaking_change_reach, event_fan_out

# Topics that become notifications for subscribers (notifications.services.fanout).
FAN_OUT_TOPICS = (
    "version.published",
    "version.promoted",
    "version.deprecated",
    "version.rolled_back",
    "version.replicated",
    "publish.failed",
    "dataset.stale",
    "usage.threshold_crossed",
)


def on_event(event: DomainEvent) -> None:
    event_fan_out(event=event)


def on_breaking_change_consumers(event: DomainEvent) -> None:
    breaking_change_reach(event=event)
