"""Keeping the raw log in shape: partitions ahead, retention, the daily figures.

Retention drops a whole month only once no day of it (or before it) waits for its
rollups, so the dashboards keep their history after the raw events are gone. Dropping
a partition is instant and leaves no bloat; in SQLite the old rows are deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from usage import partitions
from usage.models import RollupDue, UsageEvent
from usage.services.rollups import day_bounds

logger = logging.getLogger(__name__)


def _today() -> date:
    return timezone.now().date()


def partitions_maintain(*, today: date | None = None) -> list[str]:
    """Makes this month's partition and `USAGE_PARTITIONS_AHEAD` more."""
    return partitions.partitions_ensure_ahead(
        today=today or _today(), ahead=settings.USAGE_PARTITIONS_AHEAD
    )


def retention_cutoff(*, today: date | None = None) -> date:
    """The first day kept: the start of the month `USAGE_RETENTION_MONTHS` ago."""
    return partitions.month_add(
        partitions.month_start(today or _today()), -settings.USAGE_RETENTION_MONTHS
    )


def retention_apply(*, today: date | None = None) -> list[str]:
    """Drops raw events older than the retention, once rolled up; returns what went."""
    cutoff = retention_cutoff(today=today)
    if RollupDue.objects.filter(day__lt=cutoff).exists():
        logger.info("Raw usage before %s waits for its rollups before it is dropped.", cutoff)
        return []
    if connection.vendor != "postgresql":
        start, _ = day_bounds(cutoff)
        deleted, _ = UsageEvent.objects.filter(occurred_at__lt=start).delete()
        return [f"{deleted} events before {cutoff}"] if deleted else []
    dropped = []
    for name in sorted(partitions.partitions_existing()):
        month = partitions.partition_month(name)
        if month is not None and month < cutoff:
            partitions.partition_drop(month=month)
            dropped.append(name)
            logger.info("Dropped the usage partition %s (past the retention).", name)
    return dropped


def daily_run(*, steps: list[Callable[..., object]], today: date | None = None) -> list[str]:
    """Runs each daily step for yesterday once yesterday's rollups are final. The steps
    are idempotent, so running them every hour costs little and misses nothing."""
    yesterday = (today or _today()) - timedelta(days=1)
    if RollupDue.objects.filter(day__lte=yesterday).exists():
        return []
    for step in steps:
        step(day=yesterday)
    return [step.__name__ for step in steps]
