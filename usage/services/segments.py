"""User segments (seed 000: Power, Regular, Occasional, New), recomputed daily and kept
as history, from the users' daily rollups.

On a day D, for each user active in the 90 days up to D:

- **New**: first seen within `USAGE_SEGMENT_NEW_DAYS` (14) days;
- **Power**: active on at least `USAGE_SEGMENT_POWER_DAYS` (12) of the last 30 days;
- **Regular**: active on at least `USAGE_SEGMENT_REGULAR_DAYS` (4) of the last 30 days;
- **Occasional**: active in the last 90 days, less than that.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q, Sum

from usage.models import Segment, UserDay, UserSegment


def segment_of(*, first_seen: date, day: date, active_days_30: int) -> str:
    if first_seen > day - timedelta(days=settings.USAGE_SEGMENT_NEW_DAYS):
        return Segment.NEW
    if active_days_30 >= settings.USAGE_SEGMENT_POWER_DAYS:
        return Segment.POWER
    if active_days_30 >= settings.USAGE_SEGMENT_REGULAR_DAYS:
        return Segment.REGULAR
    return Segment.OCCASIONAL


def segments_compute(*, day: date) -> int:
    """Replaces the segments of `day`; returns how many users have one."""
    last_30 = Q(day__gt=day - timedelta(days=30))
    activity = (
        UserDay.objects.filter(day__gt=day - timedelta(days=90), day__lte=day)
        .values("user_id")
        .annotate(
            active_days_90=Count("id"),
            active_days_30=Count("id", filter=last_30),
            events_30=Sum("events", filter=last_30),
        )
    )
    rows = list(activity)
    first_seen = dict(
        UserDay.objects.filter(user_id__in=[r["user_id"] for r in rows], day__lte=day)
        .values("user_id")
        .annotate(first=Min("day"))
        .values_list("user_id", "first")
    )
    segments = [
        UserSegment(
            user_id=row["user_id"],
            day=day,
            segment=segment_of(
                first_seen=first_seen[row["user_id"]],
                day=day,
                active_days_30=row["active_days_30"],
            ),
            active_days_30=row["active_days_30"],
            active_days_90=row["active_days_90"],
            events_30=row["events_30"] or 0,
        )
        for row in rows
    ]
    with transaction.atomic():
        UserSegment.objects.filter(day=day).delete()
        UserSegment.objects.bulk_create(segments, batch_size=1000)
    return len(segments)
