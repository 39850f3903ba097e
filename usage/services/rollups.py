"""Daily rollups and sessions, made from the raw log one day at a time.

A day's rollups are always computed whole from that day's events and replace what was
there in one transaction, so running a day twice gives the same rows (a re-run is
harmless) and a late event (a spool replayed hours later) is taken in by running its
day again. The ingest marks each day it wrote to (`RollupDue`); `rollups_run_due()`
claims those marks one by one and clears a mark only if no newer events marked it
while the day was being computed.

One pass over the day's events in time order (a server-side cursor, flat memory) gives
everything: COUNTER's figures (`counting.CounterTally`), the per-dataset, per-user,
per-version, per-country and whole-site figures, and the sessions (a visitor's events
with no gap over 30 minutes; a session is cut at midnight UTC, like every daily figure).
Robots are left out of everything that counts people (downloads, users, sessions) but
kept in the load figures (API calls, errors, response times, bytes).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction

from usage.models import (
    DOWNLOAD_KINDS,
    AccessMethod,
    CounterDay,
    CountryDay,
    DatasetDay,
    Kind,
    RollupDue,
    SiteDay,
    UsageEvent,
    UsageSession,
    UserDay,
    VersionDay,
    visitor_of,
)
from usage.services.counting import COUNTED_STATUSES, CounterTally, Hit

logger = logging.getLogger(__name__)

SESSION_GAP = timedelta(minutes=30)
READ_KINDS = frozenset({Kind.DOWNLOAD, Kind.RAW, Kind.EXPORT, Kind.ROWS})
EVENT_FIELDS = (
    "occurred_at",
    "organization_id",
    "dataset_id",
    "version_id",
    "user_id",
    "kind",
    "status",
    "response_ms",
    "bytes",
    "country",
    "access_method",
    "client",
)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an already sorted list (0 for none)."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * fraction // 1))  # ceil
    return int(sorted_values[int(rank) - 1])


@dataclass
class _DatasetAcc:
    organization_id: int | None = None
    api_calls: int = 0
    exports: int = 0
    bytes: int = 0
    errors: int = 0
    visitors: set[str] = field(default_factory=set)
    ms: list[int] = field(default_factory=list)


@dataclass
class _UserAcc:
    events: int = 0
    downloads: int = 0
    exports: int = 0
    bytes: int = 0
    errors: int = 0
    datasets: set[int] = field(default_factory=set)


@dataclass
class _Session:
    visitor: str
    user_id: int | None
    started_at: datetime
    ended_at: datetime
    events: int = 0
    datasets: set[int] = field(default_factory=set)


@dataclass
class DayFigures:
    """Everything one day's events roll up to, before it is written."""

    day: date
    tally: CounterTally = field(default_factory=CounterTally)
    datasets: dict[int, _DatasetAcc] = field(default_factory=lambda: defaultdict(_DatasetAcc))
    users: dict[int, _UserAcc] = field(default_factory=lambda: defaultdict(_UserAcc))
    versions: dict[int, tuple[int, int, set[str]]] = field(default_factory=dict)
    countries: dict[tuple[int | None, str], tuple[int, set[str]]] = field(default_factory=dict)
    sessions: list[_Session] = field(default_factory=list)
    open_sessions: dict[str, _Session] = field(default_factory=dict)
    site_calls: int = 0
    site_errors: int = 0
    site_ms: list[int] = field(default_factory=list)
    site_visitors: set[str] = field(default_factory=set)

    def add(self, row: tuple) -> None:
        (
            occurred_at,
            organization_id,
            dataset_id,
            version_id,
            user_id,
            kind,
            status,
            response_ms,
            size,
            country,
            method,
            client,
        ) = row
        visitor = visitor_of(user_id=user_id, client=client)
        robot = method == AccessMethod.ROBOT
        ok = status in COUNTED_STATUSES or 200 <= status < 300
        error = status >= 400
        self.tally.add(Hit(occurred_at, visitor, dataset_id, kind, status, method))
        if kind != Kind.OBJECT:
            self.site_calls += 1
            self.site_ms.append(response_ms)
        self.site_errors += error
        if dataset_id is not None:
            acc = self.datasets[dataset_id]
            acc.organization_id = organization_id
            acc.api_calls += kind != Kind.OBJECT
            acc.exports += kind == Kind.EXPORT and ok and not robot
            acc.bytes += size
            acc.errors += error
            acc.ms.append(response_ms)
            if not robot:
                acc.visitors.add(visitor)
        if version_id is not None and kind in READ_KINDS and ok and not robot:
            owner, reads, seen = self.versions.get(version_id, (dataset_id, 0, set()))
            seen.add(visitor)
            self.versions[version_id] = (owner, reads + 1, seen)
        if robot:
            return
        self.site_visitors.add(visitor)
        events, seen = self.countries.get((dataset_id, country), (0, set()))
        seen.add(visitor)
        self.countries[(dataset_id, country)] = (events + 1, seen)
        if user_id is not None:
            user = self.users[user_id]
            user.events += 1
            user.downloads += kind in DOWNLOAD_KINDS and ok
            user.exports += kind == Kind.EXPORT and ok
            user.bytes += size
            user.errors += error
            if dataset_id is not None:
                user.datasets.add(dataset_id)
        session = self.open_sessions.get(visitor)
        if session is None or occurred_at - session.ended_at > SESSION_GAP:
            session = _Session(
                visitor=visitor, user_id=user_id, started_at=occurred_at, ended_at=occurred_at
            )
            self.open_sessions[visitor] = session
            self.sessions.append(session)
        session.ended_at = occurred_at
        session.events += 1
        if dataset_id is not None:
            session.datasets.add(dataset_id)


def day_figures(*, day: date) -> DayFigures:
    """Reads one day of the raw log, in time order, into its figures."""
    start, end = day_bounds(day)
    figures = DayFigures(day=day)
    rows = (
        UsageEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
        .order_by("occurred_at", "event_id")
        .values_list(*EVENT_FIELDS)
    )
    for row in rows.iterator(chunk_size=10_000):
        figures.add(row)
    return figures


def rollup_day(*, day: date) -> DayFigures:
    """Recomputes every rollup of `day` from the raw log and replaces the stored ones."""
    figures = day_figures(day=day)
    with transaction.atomic():
        _replace(figures)
    return figures


def _replace(f: DayFigures) -> None:
    day = f.day
    for model in (DatasetDay, CounterDay, UserDay, VersionDay, CountryDay, UsageSession):
        model.objects.filter(day=day).delete()
    SiteDay.objects.filter(day=day).delete()

    counter = f.tally.figures()
    per_dataset: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    CounterDay.objects.bulk_create(
        CounterDay(dataset_id=dataset_id, day=day, access_method=method, **figures.as_dict())
        for (dataset_id, method), figures in counter.items()
    )
    for (dataset_id, _), figures in counter.items():
        per_dataset[dataset_id]["downloads"] += figures.total_requests
        per_dataset[dataset_id]["investigations"] += figures.total_investigations

    dataset_rows = []
    for dataset_id, acc in f.datasets.items():
        if acc.organization_id is None:
            continue
        ms = sorted(acc.ms)
        dataset_rows.append(
            DatasetDay(
                dataset_id=dataset_id,
                organization_id=acc.organization_id,
                day=day,
                downloads=per_dataset[dataset_id]["downloads"],
                unique_downloads=f.tally.unique_sessions(dataset_id, "request"),
                investigations=per_dataset[dataset_id]["investigations"],
                unique_investigations=f.tally.unique_sessions(dataset_id, "investigation"),
                api_calls=acc.api_calls,
                exports=acc.exports,
                unique_users=len(acc.visitors),
                bytes=acc.bytes,
                errors=acc.errors,
                p50_ms=percentile(ms, 0.5),
                p95_ms=percentile(ms, 0.95),
            )
        )
    DatasetDay.objects.bulk_create(dataset_rows, batch_size=1000)

    sessions_per_user: dict[int, int] = defaultdict(int)
    for session in f.sessions:
        if session.user_id is not None:
            sessions_per_user[session.user_id] += 1
    UserDay.objects.bulk_create(
        (
            UserDay(
                user_id=user_id,
                day=day,
                events=acc.events,
                downloads=acc.downloads,
                exports=acc.exports,
                datasets=len(acc.datasets),
                sessions=sessions_per_user[user_id],
                bytes=acc.bytes,
                errors=acc.errors,
            )
            for user_id, acc in f.users.items()
        ),
        batch_size=1000,
    )
    VersionDay.objects.bulk_create(
        (
            VersionDay(
                version_id=version_id, dataset_id=dataset_id, day=day, reads=reads, users=len(seen)
            )
            for version_id, (dataset_id, reads, seen) in f.versions.items()
            if dataset_id is not None
        ),
        batch_size=1000,
    )
    CountryDay.objects.bulk_create(
        CountryDay(day=day, dataset_id=dataset_id, country=country, events=events, users=len(seen))
        for (dataset_id, country), (events, seen) in f.countries.items()
    )
    UsageSession.objects.bulk_create(
        (
            UsageSession(
                day=day,
                visitor=session.visitor,
                user_id=session.user_id,
                started_at=session.started_at,
                ended_at=session.ended_at,
                events=session.events,
                datasets=len(session.datasets),
            )
            for session in f.sessions
        ),
        batch_size=1000,
    )
    if f.site_calls or f.site_visitors:
        SiteDay.objects.create(
            day=day,
            api_calls=f.site_calls,
            downloads=sum(row.downloads for row in dataset_rows),
            errors=f.site_errors,
            active_users=len(f.site_visitors),
            sessions=len(f.sessions),
            p95_ms=percentile(sorted(f.site_ms), 0.95),
        )


def rollups_run_due(*, limit: int = 31) -> list[date]:
    """Rolls up the days the ingest marked, oldest first; returns the days done."""
    done = []
    for due in RollupDue.objects.order_by("day")[:limit]:
        with transaction.atomic():
            claimed = (
                RollupDue.objects.select_for_update(skip_locked=True)
                .filter(pk=due.pk, marked_at=due.marked_at)
                .first()
            )
            if claimed is None:
                continue  # another worker has it, or it was marked again: next run
            figures = day_figures(day=claimed.day)
            _replace(figures)
            claimed.delete()
        done.append(due.day)
    return done
