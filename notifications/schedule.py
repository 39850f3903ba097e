"""When a notification may go out: quiet hours, digest times and the retry schedule.

Plain functions of a preference and a moment, so tests pass any `now` they like; the
services store their answers as `Delivery.due_at`, and a periodic tick takes what is due.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifications.models import Frequency, Preference

# Standard Webhooks' suggested schedule: immediately, then after 5 s, 5 min, 30 min, 2 h,
# 5 h, 10 h and 10 h. After the last attempt fails the delivery is dead.
RETRY_DELAYS = [0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
MAX_ATTEMPTS = len(RETRY_DELAYS)


def retry_delay(attempts: int) -> timedelta | None:
    """The wait before the next attempt after `attempts` tries failed; None when done.

    A tenth either way of jitter, so receivers that come back at once are not hit by
    every retry in the same second."""
    if attempts >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempts]
    return timedelta(seconds=base * random.uniform(0.9, 1.1))


def _local(pref: Preference, at: datetime) -> datetime:
    return at.astimezone(ZoneInfo(pref.time_zone or "UTC"))


def _at(day: datetime, clock: time) -> datetime:
    """`clock` on the local day of `day`, in its time zone (fold-safe for DST changes)."""
    return day.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0).astimezone(
        day.tzinfo
    )


def quiet_until(pref: Preference | None, at: datetime) -> datetime | None:
    """When the quiet hours around `at` end, or None if `at` is not in quiet hours."""
    if pref is None or pref.quiet_start is None or pref.quiet_end is None:
        return None
    local = _local(pref, at)
    start, end = pref.quiet_start, pref.quiet_end
    now = local.time()
    if start < end:
        inside = start <= now < end
        ends = _at(local, end)
    else:  # across midnight: 22:00 to 07:00
        inside = now >= start or now < end
        ends = _at(local, end) if now < end else _at(local + timedelta(days=1), end)
    return ends.astimezone(at.tzinfo) if inside else None


def digest_due(pref: Preference | None, frequency: str, at: datetime) -> datetime:
    """The next digest time after `at` for `frequency` (hourly, daily, weekly)."""
    hour = pref.digest_hour if pref else 8
    weekday = pref.digest_weekday if pref else 0
    local = _local(pref, at) if pref else at
    if frequency == Frequency.HOURLY:
        due = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    else:
        due = _at(local, time(hour))
        if due <= local:
            due = _at(local + timedelta(days=1), time(hour))
        if frequency == Frequency.WEEKLY:
            while due.weekday() != weekday:
                due = _at(due + timedelta(days=1), time(hour))
    return due.astimezone(at.tzinfo)


def send_time(pref: Preference | None, frequency: str, at: datetime) -> tuple[datetime, bool]:
    """When a notification made at `at` is due, and whether it waits for a digest."""
    digest = frequency in (Frequency.HOURLY, Frequency.DAILY, Frequency.WEEKLY)
    due = digest_due(pref, frequency, at) if digest else at
    quiet = quiet_until(pref, due)
    return (quiet or due), digest
