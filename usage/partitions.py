"""The raw log's monthly partitions (PostgreSQL) and its retention.

The migration makes `usage_event` a table partitioned by range of `occurred_at`, one
partition per calendar month (UTC), with a BRIN index on the time (tiny, and the log is
written in time order) and a b-tree on (dataset, time) for one dataset's events. The
daily maintenance task makes partitions `USAGE_PARTITIONS_AHEAD` months ahead; the
ingest also makes any partition its batch needs on the spot, so a missing partition is
never an error. Past `USAGE_RETENTION_MONTHS`, a month is dropped whole (instant, no
bloat) but only once no day in it is waiting for its rollups.

In the embedded mode (SQLite) the log is one plain table and retention deletes rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import connection

TABLE = "usage_event"


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{TABLE}_y{month.year:04d}m{month.month:02d}"


def _bounds(month: date) -> tuple[str, str]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end_month = month_add(month, 1)
    end = datetime(end_month.year, end_month.month, 1, tzinfo=UTC)
    return start.isoformat(), end.isoformat()


def partitions_existing() -> set[str]:
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [TABLE],
        )
        return {row[0] for row in cursor.fetchall()}


def partition_ensure(*, month: date, cursor=None) -> bool:
    """Makes the partition for `month` if it is missing; True when it made one.

    Safe to run concurrently: `IF NOT EXISTS`, and a race that still collides is
    answered by the partition being there.
    """
    if connection.vendor != "postgresql":
        return False
    month = month_start(month)
    start, end = _bounds(month)
    name = partition_name(month)
    sql = (
        f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{TABLE}" '
        f"FOR VALUES FROM ('{start}') TO ('{end}')"
    )
    if cursor is not None:
        cursor.execute(sql)
        return True
    existed = name in partitions_existing()
    with connection.cursor() as own:
        own.execute(sql)
    return not existed


def partitions_ensure_ahead(*, today: date, ahead: int) -> list[str]:
    """Makes this month's partition and `ahead` more; returns the names it made."""
    made = []
    for offset in range(ahead + 1):
        month = month_add(month_start(today), offset)
        if partition_ensure(month=month):
            made.append(partition_name(month))
    return made


def partition_month(name: str) -> date | None:
    prefix = f"{TABLE}_y"
    if not name.startswith(prefix):
        return None
    try:
        return date(int(name[len(prefix) : len(prefix) + 4]), int(name[-2:]), 1)
    except ValueError:
        return None


def partition_drop(*, month: date) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{partition_name(month)}"')
