"""Freshness: a dataset with `freshness_hours` expects a new version at least that often.

A periodic check (`versioning.check_freshness`, every few minutes) records
`dataset.stale` once when the current version grows older than that, and
`dataset.fresh` once when a newer version ends the stale episode. The episode needs no
table of its own: it is the last of those two events for the dataset, and its version;
the dataset's row is locked while deciding, so two checks running at once record one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from catalog import events
from catalog.models import Dataset, DomainEvent
from versioning.models import DatasetVersion

STALE, FRESH = "dataset.stale", "dataset.fresh"


def _last_episode_event(dataset_id: int) -> DomainEvent | None:
    return (
        DomainEvent.objects.filter(topic__in=[STALE, FRESH], payload__dataset_id=dataset_id)
        .order_by("-id")
        .first()
    )


def _payload(dataset: Dataset, current: DatasetVersion, **extra) -> dict:
    return {
        "dataset_id": dataset.pk,
        "dataset": dataset.path,
        "organization": dataset.organization.slug,
        "version_id": current.pk,
        "version": current.version,
        "freshness_hours": dataset.freshness_hours,
        "last_published_at": current.published_at.isoformat(),
        **extra,
    }


def dataset_freshness_check(*, dataset: Dataset, now: datetime | None = None) -> str | None:
    """Records `dataset.stale` or `dataset.fresh` for `dataset` if its episode starts or
    ends now; returns the topic recorded, or None."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Dataset.objects.select_for_update(of=("self",))
            .select_related("organization")
            .filter(pk=dataset.pk)
            .first()
        )
        if locked is None or not locked.freshness_hours:
            return None
        current = DatasetVersion.objects.filter(dataset=locked, is_current=True).first()
        if current is None:
            return None
        last = _last_episode_event(locked.pk)
        in_episode = last is not None and last.topic == STALE
        age = now - current.published_at
        late = age > timedelta(hours=locked.freshness_hours)
        if in_episode and last.payload.get("version_id") != current.pk:
            # A newer version was published since the episode began: it is over.
            events.event_record(
                topic=FRESH,
                payload=_payload(locked, current, stale_since=last.created_at.isoformat()),
                organization=locked.organization,
            )
            in_episode = False
            if not late:
                return FRESH
        if late and not in_episode:
            hours_late = int(
                (age - timedelta(hours=locked.freshness_hours)).total_seconds() // 3600
            )
            events.event_record(
                topic=STALE,
                payload=_payload(locked, current, hours_late=hours_late),
                organization=locked.organization,
            )
            return STALE
    return None


def datasets_freshness_check(*, now: datetime | None = None) -> int:
    """Checks every dataset with a freshness expectation; returns how many events it
    recorded."""
    recorded = 0
    for dataset in Dataset.objects.filter(freshness_hours__isnull=False).only("pk"):
        if dataset_freshness_check(dataset=dataset, now=now):
            recorded += 1
    return recorded
