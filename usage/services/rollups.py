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

In PostgreSQL the same figures are computed by the database (`_replace_postgresql`):
window functions for double clicks and sessions, `percentile_disc` for p50/p95, and
`INSERT ... SELECT` into the rollup tables, about twenty times faster than the pass in
Python, which remains for SQLite; a test holds the two to the same answers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction

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
        if isinstance(user_id, tuple):  # (as logged, still existing)
            logged_user, user_id = user_id
        else:
            logged_user = user_id
        visitor = visitor_of(user_id=logged_user, client=client)
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
    known = _known_ids(start, end)
    for row in rows.iterator(chunk_size=10_000):
        figures.add(_with_known(row, known))
    return figures


def _known_ids(start: datetime, end: datetime) -> dict[str, dict[int, int] | set[int]]:
    """Which datasets (with their organisation), versions and users of the day's events
    still exist: the log outlives what it names."""
    from django.contrib.auth import get_user_model

    from catalog.models import Dataset
    from versioning.models import DatasetVersion

    day = UsageEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    return {
        "datasets": dict(
            Dataset.objects.filter(pk__in=day.values("dataset_id")).values_list(
                "pk", "organization_id"
            )
        ),
        "versions": dict(
            DatasetVersion.objects.filter(pk__in=day.values("version_id")).values_list(
                "pk", "dataset_id"
            )
        ),
        "users": set(
            get_user_model()
            .objects.filter(pk__in=day.values("user_id"))
            .values_list("pk", flat=True)
        ),
    }


def _with_known(row: tuple, known: dict) -> tuple:
    occurred_at, _, dataset_id, version_id, user_id, *rest = row
    organization_id = known["datasets"].get(dataset_id)
    dataset_id = dataset_id if organization_id is not None else None
    if version_id is not None and known["versions"].get(version_id) != dataset_id:
        version_id = None
    known_user = user_id if user_id in known["users"] else None
    # The visitor stays who it was (its user id), even when the user is gone.
    return (occurred_at, organization_id, dataset_id, version_id, (user_id, known_user), *rest)


def rollup_day(*, day: date, engine: str | None = None) -> None:
    """Recomputes every rollup of `day` from the raw log and replaces the stored ones.

    `engine` ("sql" or "python") chooses the implementation; by default SQL on
    PostgreSQL, Python elsewhere."""
    with transaction.atomic():
        _rollup(day, engine=engine)


def _rollup(day: date, *, engine: str | None = None) -> None:
    engine = engine or ("sql" if connection.vendor == "postgresql" else "python")
    if engine == "sql":
        _replace_postgresql(day)
    else:
        _replace(day_figures(day=day))


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
            _rollup(claimed.day)
            claimed.delete()
        done.append(due.day)
    return done


# --- The same in PostgreSQL -----------------------------------------------------------

_DAY_EVENTS = """
CREATE TEMPORARY TABLE usage_day_events ON COMMIT DROP AS
SELECT e.occurred_at, d.organization_id, d.id AS dataset_id, v.id AS version_id,
    u.id AS user_id, e.kind, e.status, e.response_ms, e.bytes, e.country,
    e.access_method,
    CASE WHEN e.user_id IS NOT NULL THEN 'u' || e.user_id ELSE 'c' || e.client END
        AS visitor,
    e.access_method = 'robot' AS robot,
    (e.status IN (200, 304) OR e.status BETWEEN 200 AND 299) AS ok
FROM usage_event e
-- The log outlives what it names: a dataset, version or user deleted since is left out
-- of the rollups that refer to it.
LEFT JOIN catalog_dataset d ON d.id = e.dataset_id
LEFT JOIN versioning_datasetversion v ON v.id = e.version_id AND v.dataset_id = d.id
LEFT JOIN auth_user u ON u.id = e.user_id
WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
"""
_COUNTER_HITS = """
CREATE TEMPORARY TABLE usage_day_hits ON COMMIT DROP AS
SELECT dataset_id, access_method, visitor, kind = ANY(%(requests)s) AS is_request,
    visitor || '|' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') AS session,
    lag(occurred_at) OVER (
        PARTITION BY visitor, dataset_id, kind ORDER BY occurred_at
    ) IS NULL OR occurred_at - lag(occurred_at) OVER (
        PARTITION BY visitor, dataset_id, kind ORDER BY occurred_at
    ) > make_interval(secs => %(double_click)s) AS fresh
FROM usage_day_events
WHERE dataset_id IS NOT NULL AND status IN (200, 304) AND NOT robot
    AND (kind = ANY(%(investigations)s) OR kind = ANY(%(requests)s))
"""
_COUNTER_DAY = """
INSERT INTO usage_counterday (dataset_id, day, access_method, total_investigations,
    unique_investigations, total_requests, unique_requests)
SELECT dataset_id, %(day)s, access_method, count(*) FILTER (WHERE fresh),
    count(DISTINCT session), count(*) FILTER (WHERE fresh AND is_request),
    count(DISTINCT session) FILTER (WHERE is_request)
FROM usage_day_hits GROUP BY dataset_id, access_method
"""
_DATASET_DAY = """
INSERT INTO usage_datasetday (dataset_id, organization_id, day, downloads,
    unique_downloads, investigations, unique_investigations, api_calls, exports,
    unique_users, bytes, errors, p50_ms, p95_ms)
SELECT e.dataset_id, max(e.organization_id), %(day)s,
    coalesce(max(c.requests), 0), coalesce(max(c.unique_requests), 0),
    coalesce(max(c.investigations), 0), coalesce(max(c.unique_investigations), 0),
    count(*) FILTER (WHERE e.kind <> 'object'),
    count(*) FILTER (WHERE e.kind = 'export' AND e.ok AND NOT e.robot),
    count(DISTINCT e.visitor) FILTER (WHERE NOT e.robot),
    sum(e.bytes), count(*) FILTER (WHERE e.status >= 400),
    percentile_disc(0.5) WITHIN GROUP (ORDER BY e.response_ms),
    percentile_disc(0.95) WITHIN GROUP (ORDER BY e.response_ms)
FROM usage_day_events e
LEFT JOIN (
    SELECT dataset_id, count(*) FILTER (WHERE fresh AND is_request) AS requests,
        count(DISTINCT session) FILTER (WHERE is_request) AS unique_requests,
        count(*) FILTER (WHERE fresh) AS investigations,
        count(DISTINCT session) AS unique_investigations
    FROM usage_day_hits GROUP BY dataset_id
) c ON c.dataset_id = e.dataset_id
WHERE e.dataset_id IS NOT NULL
GROUP BY e.dataset_id HAVING max(e.organization_id) IS NOT NULL
"""
_SESSIONS = """
INSERT INTO usage_usagesession (day, visitor, user_id, started_at, ended_at, events,
    datasets)
SELECT %(day)s, visitor, max(user_id), min(occurred_at), max(occurred_at), count(*),
    count(DISTINCT dataset_id)
FROM (
    SELECT visitor, user_id, occurred_at, dataset_id, sum(starts) OVER (
        PARTITION BY visitor ORDER BY occurred_at ROWS UNBOUNDED PRECEDING
    ) AS number
    FROM (
        SELECT visitor, user_id, occurred_at, dataset_id,
            CASE WHEN occurred_at - lag(occurred_at) OVER (
                PARTITION BY visitor ORDER BY occurred_at
            ) <= make_interval(secs => %(gap)s) THEN 0 ELSE 1 END AS starts
        FROM usage_day_events WHERE NOT robot
    ) marked
) numbered
GROUP BY visitor, number
"""
_USER_DAY = """
INSERT INTO usage_userday (user_id, day, events, downloads, exports, datasets, sessions,
    bytes, errors)
SELECT e.user_id, %(day)s, count(*),
    count(*) FILTER (WHERE e.kind = ANY(%(downloads)s) AND e.ok),
    count(*) FILTER (WHERE e.kind = 'export' AND e.ok),
    count(DISTINCT e.dataset_id), coalesce(max(s.sessions), 0), sum(e.bytes),
    count(*) FILTER (WHERE e.status >= 400)
FROM usage_day_events e
LEFT JOIN (
    SELECT user_id, count(*) AS sessions FROM usage_usagesession
    WHERE day = %(day)s AND user_id IS NOT NULL GROUP BY user_id
) s ON s.user_id = e.user_id
WHERE e.user_id IS NOT NULL AND NOT e.robot
GROUP BY e.user_id
"""
_VERSION_DAY = """
INSERT INTO usage_versionday (version_id, dataset_id, day, reads, users)
SELECT version_id, max(dataset_id), %(day)s, count(*), count(DISTINCT visitor)
FROM usage_day_events
WHERE version_id IS NOT NULL AND dataset_id IS NOT NULL AND kind = ANY(%(reads)s) AND ok
    AND NOT robot
GROUP BY version_id
"""
_COUNTRY_DAY = """
INSERT INTO usage_countryday (day, dataset_id, country, events, users)
SELECT %(day)s, dataset_id, country, count(*), count(DISTINCT visitor)
FROM usage_day_events WHERE NOT robot GROUP BY dataset_id, country
"""
_SITE_DAY = """
INSERT INTO usage_siteday (day, api_calls, downloads, errors, active_users, sessions,
    p95_ms)
SELECT %(day)s, count(*) FILTER (WHERE kind <> 'object'),
    (SELECT coalesce(sum(downloads), 0) FROM usage_datasetday WHERE day = %(day)s),
    count(*) FILTER (WHERE status >= 400),
    count(DISTINCT visitor) FILTER (WHERE NOT robot),
    (SELECT count(*) FROM usage_usagesession WHERE day = %(day)s),
    coalesce(percentile_disc(0.95) WITHIN GROUP (ORDER BY response_ms)
        FILTER (WHERE kind <> 'object'), 0)
FROM usage_day_events
HAVING count(*) FILTER (WHERE kind <> 'object') > 0 OR bool_or(NOT robot)
"""


def _replace_postgresql(day: date) -> None:
    """`_replace(day_figures(day))`, computed by PostgreSQL in the current transaction."""
    from usage.models import INVESTIGATION_KINDS, REQUEST_KINDS
    from usage.services.counting import DOUBLE_CLICK_SECONDS

    start, end = day_bounds(day)
    params = {
        "day": day,
        "start": start,
        "end": end,
        "requests": sorted(str(k) for k in REQUEST_KINDS),
        "investigations": sorted(str(k) for k in INVESTIGATION_KINDS),
        "downloads": sorted(str(k) for k in DOWNLOAD_KINDS),
        "reads": sorted(str(k) for k in READ_KINDS),
        "double_click": DOUBLE_CLICK_SECONDS,
        "gap": int(SESSION_GAP.total_seconds()),
    }
    for model in (DatasetDay, CounterDay, UserDay, VersionDay, CountryDay, UsageSession):
        model.objects.filter(day=day).delete()
    SiteDay.objects.filter(day=day).delete()
    with connection.cursor() as cursor:
        for sql in (
            "DROP TABLE IF EXISTS usage_day_events, usage_day_hits",
            _DAY_EVENTS,
            _COUNTER_HITS,
            _COUNTER_DAY,
            _DATASET_DAY,
            _SESSIONS,
            _USER_DAY,
            _VERSION_DAY,
            _COUNTRY_DAY,
            _SITE_DAY,
            "DROP TABLE usage_day_events, usage_day_hits",
        ):
            cursor.execute(sql, params)
