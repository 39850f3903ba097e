"""What other apps hear from usage: thresholds crossed, unusual days, and who a
breaking change breaks. Each is an outbox event recorded in the transaction that
notes it, exactly once (a re-run finds it noted and records nothing).
"""

from __future__ import annotations

import statistics
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog import events
from catalog.models import Dataset
from usage.models import (
    AccessMethod,
    BreakingChangeNotice,
    DatasetDay,
    Direction,
    Metric,
    UsageAnomaly,
    UsageEvent,
    UsageThreshold,
)
from usage.services.counting import COUNTED_STATUSES
from usage.services.rollups import READ_KINDS
from versioning.models import DatasetVersion

ANOMALY_WINDOW_DAYS = 28
CONSUMER_DAYS = 90


def _payload(dataset: Dataset, **fields) -> dict:
    return {
        "dataset_id": dataset.pk,
        "dataset": dataset.path,
        "organization": dataset.organization.slug,
        **fields,
    }


def _value(dataset_id: int, day: date, metric: str) -> int:
    row = DatasetDay.objects.filter(dataset_id=dataset_id, day=day).values(metric).first()
    return row[metric] if row else 0


def thresholds_check(*, day: date) -> int:
    """Checks every threshold against `day`; returns how many newly crossed."""
    crossed = 0
    thresholds = UsageThreshold.objects.select_related("dataset__organization").filter(
        Q(last_checked_on__isnull=True) | Q(last_checked_on__lt=day)
    )
    for threshold in thresholds:
        value = _value(threshold.dataset_id, day, threshold.metric)
        over = (
            value > threshold.value
            if threshold.direction == Direction.ABOVE
            else value < threshold.value
        )
        with transaction.atomic():
            # Fenced by the day last checked: a concurrent run changes nothing.
            updated = UsageThreshold.objects.filter(
                pk=threshold.pk, last_checked_on=threshold.last_checked_on
            ).update(
                last_checked_on=day,
                is_crossed=over,
                crossed_on=day if over and not threshold.is_crossed else threshold.crossed_on,
            )
            if updated and over and not threshold.is_crossed:
                events.event_record(
                    topic="usage.threshold_crossed",
                    payload=_payload(
                        threshold.dataset,
                        threshold_id=threshold.pk,
                        metric=threshold.metric,
                        direction=threshold.direction,
                        threshold=threshold.value,
                        value=value,
                        day=day.isoformat(),
                    ),
                    organization=threshold.dataset.organization,
                )
                crossed += 1
    return crossed


def anomalies_detect(*, day: date, metric: str = Metric.DOWNLOADS) -> int:
    """Records `usage.anomaly` for each dataset whose `metric` on `day` lies outside
    `USAGE_ANOMALY_K` standard deviations of its trailing 28 days (days without a rollup
    count as 0; a dataset needs `USAGE_ANOMALY_MIN_DAYS` days of history, and a flat
    history counts as a deviation of 1 so that one extra download is not an anomaly)."""
    start = day - timedelta(days=ANOMALY_WINDOW_DAYS)
    history: dict[int, dict[date, int]] = {}
    for row in DatasetDay.objects.filter(day__gte=start, day__lt=day).values(
        "dataset_id", "day", metric
    ):
        history.setdefault(row["dataset_id"], {})[row["day"]] = row[metric]
    found = 0
    for dataset_id, days in history.items():
        if len(days) < settings.USAGE_ANOMALY_MIN_DAYS:
            continue
        first = min(days)
        series = [days.get(first + timedelta(days=i), 0) for i in range((day - first).days)]
        mean = statistics.fmean(series)
        stdev = statistics.pstdev(series)
        value = _value(dataset_id, day, metric)
        if abs(value - mean) <= settings.USAGE_ANOMALY_K * max(stdev, 1.0):
            continue
        dataset = Dataset.objects.select_related("organization").get(pk=dataset_id)
        with transaction.atomic():
            anomaly, created = UsageAnomaly.objects.get_or_create(
                dataset_id=dataset_id,
                day=day,
                metric=metric,
                defaults={"value": value, "mean": mean, "stdev": stdev},
            )
            if created:
                events.event_record(
                    topic="usage.anomaly",
                    payload=_payload(
                        dataset,
                        metric=metric,
                        day=day.isoformat(),
                        value=value,
                        mean=round(mean, 3),
                        stdev=round(stdev, 3),
                        direction="above" if value > mean else "below",
                    ),
                    organization=dataset.organization,
                )
                found += 1
    return found


def breaking_change_consumers_record(*, version: DatasetVersion) -> BreakingChangeNotice | None:
    """Records `usage.breaking_change_consumers` with the users who read the major line
    that a breaking `version` replaces, in the last 90 days. Once per version."""
    previous = version.parent
    if not version.breaking or previous is None:
        return None
    line = Q(version__major=previous.major)
    if previous.major == 0:  # below 1.0.0 each minor is its own line
        line &= Q(version__minor=previous.minor)
    since = timezone.now() - timedelta(days=CONSUMER_DAYS)
    users = list(
        UsageEvent.objects.filter(
            line,
            dataset_id=version.dataset_id,
            occurred_at__gte=since,
            user_id__isnull=False,
            kind__in=READ_KINDS,
            status__in=COUNTED_STATUSES,
        )
        .exclude(access_method=AccessMethod.ROBOT)
        .values_list("user_id", "user__username")
        .distinct()
        .order_by("user_id")
    )
    dataset = version.dataset
    with transaction.atomic():
        notice, created = BreakingChangeNotice.objects.get_or_create(
            version=version,
            defaults={"previous_major": previous.major, "user_ids": [u for u, _ in users]},
        )
        if not created:
            return notice
        events.event_record(
            topic="usage.breaking_change_consumers",
            payload=_payload(
                dataset,
                version_id=version.pk,
                version=version.version,
                previous_version=previous.version,
                previous_major=previous.major,
                user_ids=[u for u, _ in users],
                usernames=[name for _, name in users],
                since=since.date().isoformat(),
            ),
            organization=dataset.organization,
        )
    return notice
