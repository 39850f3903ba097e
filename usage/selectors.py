"""Reads for the dashboards, the API and the panels other pages show.

Everything here reads the daily rollups, never the raw log, in a fixed number of
queries whatever the number of datasets or days: that is what keeps the dashboards
fast over years of events (see the benchmark). Who sees what follows the catalog:
stewards see the datasets and members of the organisations they steward.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from catalog.models import Dataset, Organization
from catalog.selectors import organizations_stewarded_by
from usage.models import (
    CountryDay,
    DatasetDay,
    Segment,
    SiteDay,
    UsageSession,
    UserDay,
    UserSegment,
    VersionDay,
)
from versioning.models import DatasetVersion, VersionStatus

GRANULARITIES = ("day", "week", "month")
SERIES_FIELDS = (
    "downloads",
    "unique_downloads",
    "investigations",
    "unique_investigations",
    "api_calls",
    "exports",
    "unique_users",
    "bytes",
    "errors",
)


def today() -> date:
    return timezone.now().date()


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def stewarded_datasets(user) -> QuerySet[Dataset]:
    if user.is_superuser:
        return Dataset.objects.select_related("organization")
    return Dataset.objects.select_related("organization").filter(
        organization__in=organizations_stewarded_by(user)
    )


def stewarded_organizations(user) -> QuerySet[Organization]:
    return Organization.objects.all() if user.is_superuser else organizations_stewarded_by(user)


# --- One dataset ----------------------------------------------------------------------


def _bucket(granularity: str):
    return {"week": TruncWeek("day"), "month": TruncMonth("day")}.get(granularity, F("day"))


def _period_start(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def dataset_usage_series(
    *, dataset: Dataset, start: date, end: date, granularity: str
) -> list[dict[str, Any]]:
    """One row per period from `start` to `end` (inclusive), zeros where nothing
    happened. Unique figures of a week or month are sums of the days' (a visitor on
    two days counts twice), as COUNTER sums them over a reporting period."""
    rows = (
        DatasetDay.objects.filter(dataset=dataset, day__gte=start, day__lte=end)
        .annotate(period=_bucket(granularity))
        .values("period")
        .annotate(**{name: Sum(name) for name in SERIES_FIELDS}, p95_ms=Max("p95_ms"))
    )
    found = {_as_date(row["period"]): row for row in rows}
    periods = sorted({_period_start(d, granularity) for d in days_between(start, end)})
    series = []
    for period in periods:
        row = found.get(period, {})
        entry = {"period": period.isoformat()}
        entry.update({name: row.get(name) or 0 for name in SERIES_FIELDS})
        entry["p95_ms"] = row.get("p95_ms") or 0
        series.append(entry)
    return series


def _as_date(value) -> date:
    return value.date() if isinstance(value, datetime) else value


def dataset_version_reads(*, dataset: Dataset, start: date, end: date) -> list[dict[str, Any]]:
    return list(
        VersionDay.objects.filter(dataset=dataset, day__gte=start, day__lte=end)
        .values("version__version", "version__status")
        .annotate(reads=Sum("reads"), users=Sum("users"))
        .order_by("-reads", "version__version")
    )


# --- The admin home and the summary API -------------------------------------------------


def stale_dataset_ids(
    datasets: Sequence[Dataset],
    *,
    now: datetime | None = None,
    published: dict[int, datetime] | None = None,
) -> set[int]:
    """Datasets whose freshness expectation passed with no new version: one query, or
    none when the current versions' `published` times are given."""
    now = now or timezone.now()
    expecting = [d for d in datasets if d.freshness_hours]
    if not expecting:
        return set()
    if published is None:
        published = dict(
            DatasetVersion.objects.filter(dataset__in=expecting, is_current=True).values_list(
                "dataset_id", "published_at"
            )
        )
    return {
        d.pk
        for d in expecting
        if d.pk not in published or published[d.pk] + timedelta(hours=d.freshness_hours) < now
    }


@dataclass(frozen=True)
class Summary:
    datasets: int
    versions: int
    stale_datasets: int
    downloads_today: int
    errors_today: int
    active_users_today: int
    api_calls_today: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def system_summary(*, user) -> Summary:
    """The admin home's tiles, for what `user` stewards (everything for a superuser).

    Errors and active users cover the whole system for a superuser (requests for no
    dataset included), and the user's datasets for a steward."""
    datasets = list(stewarded_datasets(user))
    ids = [d.pk for d in datasets]
    day = today()
    figures = DatasetDay.objects.filter(dataset_id__in=ids, day=day).aggregate(
        downloads=Sum("downloads"),
        errors=Sum("errors"),
        users=Sum("unique_users"),
        calls=Sum("api_calls"),
    )
    errors, users = figures["errors"] or 0, figures["users"] or 0
    if user.is_superuser:
        site = SiteDay.objects.filter(day=day).first()
        if site is not None:
            errors, users = site.errors, site.active_users
    return Summary(
        datasets=len(datasets),
        versions=DatasetVersion.objects.filter(dataset_id__in=ids)
        .exclude(status=VersionStatus.DRAFT)
        .count(),
        stale_datasets=len(stale_dataset_ids(datasets)),
        downloads_today=figures["downloads"] or 0,
        errors_today=errors,
        active_users_today=users,
        api_calls_today=figures["calls"] or 0,
    )


def top_datasets(*, user, start: date, end: date, limit: int = 10) -> list[dict[str, Any]]:
    return list(
        DatasetDay.objects.filter(
            dataset__in=stewarded_datasets(user), day__gte=start, day__lte=end
        )
        .values("dataset_id", "dataset__layer", "dataset__name", "dataset__organization__slug")
        .annotate(downloads=Sum("downloads"), api_calls=Sum("api_calls"))
        .order_by("-downloads", "-api_calls", "dataset_id")[:limit]
    )


def daily_totals(*, user, start: date, end: date) -> list[dict[str, Any]]:
    """Downloads, API calls and errors per day over the user's datasets."""
    return list(
        DatasetDay.objects.filter(
            dataset__in=stewarded_datasets(user), day__gte=start, day__lte=end
        )
        .values("day")
        .annotate(
            downloads=Sum("downloads"),
            api_calls=Sum("api_calls"),
            errors=Sum("errors"),
            exports=Sum("exports"),
        )
        .order_by("day")
    )


# --- Dataset health --------------------------------------------------------------------


@dataclass
class HealthRow:
    dataset: Dataset
    current_version: str | None
    published_at: datetime | None
    freshness_hours: int | None
    is_stale: bool
    downloads_7d: int
    downloads_30d: int
    api_calls_30d: int
    errors_30d: int
    p95_ms_7d: int

    @property
    def error_rate(self) -> float:
        return self.errors_30d / self.api_calls_30d if self.api_calls_30d else 0.0

    @property
    def due_at(self) -> datetime | None:
        if self.freshness_hours and self.published_at:
            return self.published_at + timedelta(hours=self.freshness_hours)
        return None


def dataset_health_rows(*, datasets: Sequence[Dataset], day: date | None = None) -> list[HealthRow]:
    """Seed 000's `v_dataset_health_dashboard`, one row per dataset, in two queries."""
    day = day or today()
    ids = [d.pk for d in datasets]
    last_7 = Q(day__gt=day - timedelta(days=7))
    figures = {
        row["dataset_id"]: row
        for row in DatasetDay.objects.filter(
            dataset_id__in=ids, day__gt=day - timedelta(days=30), day__lte=day
        )
        .values("dataset_id")
        .annotate(
            downloads_30d=Sum("downloads"),
            downloads_7d=Sum("downloads", filter=last_7),
            api_calls_30d=Sum("api_calls"),
            errors_30d=Sum("errors"),
            p95_ms_7d=Max("p95_ms", filter=last_7),
        )
    }
    current = {
        row["dataset_id"]: row
        for row in DatasetVersion.objects.filter(dataset_id__in=ids, is_current=True).values(
            "dataset_id", "version", "published_at"
        )
    }
    stale = stale_dataset_ids(
        datasets, published={pk: row["published_at"] for pk, row in current.items()}
    )
    rows = []
    for dataset in datasets:
        f = figures.get(dataset.pk, {})
        c = current.get(dataset.pk, {})
        rows.append(
            HealthRow(
                dataset=dataset,
                current_version=c.get("version"),
                published_at=c.get("published_at"),
                freshness_hours=dataset.freshness_hours,
                is_stale=dataset.pk in stale,
                downloads_7d=f.get("downloads_7d") or 0,
                downloads_30d=f.get("downloads_30d") or 0,
                api_calls_30d=f.get("api_calls_30d") or 0,
                errors_30d=f.get("errors_30d") or 0,
                p95_ms_7d=f.get("p95_ms_7d") or 0,
            )
        )
    return rows


def downloads_30d(datasets: Sequence[Dataset]) -> dict[int, int]:
    """A column for other pages: each dataset's downloads over the last 30 days."""
    day = today()
    return dict(
        DatasetDay.objects.filter(
            dataset__in=list(datasets), day__gt=day - timedelta(days=30), day__lte=day
        )
        .values("dataset_id")
        .annotate(total=Sum("downloads"))
        .values_list("dataset_id", "total")
    )


# --- User activity ---------------------------------------------------------------------


def users_visible_q(user) -> Q:
    """Users whose activity `user` may read: members of the organisations they steward
    (a subquery, so a user in two of them is not counted twice)."""
    if user.is_superuser:
        return Q()
    from catalog.models import Membership

    members = Membership.objects.filter(organization__in=organizations_stewarded_by(user)).values(
        "user_id"
    )
    return Q(user_id__in=members)


def segments_over_time(*, user, start: date, end: date) -> list[dict[str, Any]]:
    return list(
        UserSegment.objects.filter(users_visible_q(user), day__gte=start, day__lte=end)
        .values("day", "segment")
        .annotate(users=Count("user_id", distinct=True))
        .order_by("day", "segment")
    )


def segments_latest(*, user) -> dict[str, int]:
    latest = UserSegment.objects.filter(users_visible_q(user)).aggregate(day=Max("day"))["day"]
    counts = {str(s): 0 for s in Segment}
    if latest is None:
        return counts
    for row in (
        UserSegment.objects.filter(users_visible_q(user), day=latest)
        .values("segment")
        .annotate(users=Count("user_id", distinct=True))
    ):
        counts[row["segment"]] = row["users"]
    return counts


def top_users(*, user, start: date, end: date, limit: int = 20) -> list[dict[str, Any]]:
    return list(
        UserDay.objects.filter(users_visible_q(user), day__gte=start, day__lte=end)
        .values("user_id", "user__username")
        .annotate(
            events=Sum("events"),
            downloads=Sum("downloads"),
            exports=Sum("exports"),
            sessions=Sum("sessions"),
            active_days=Count("day", distinct=True),
            bytes=Sum("bytes"),
        )
        .order_by("-events", "user_id")[:limit]
    )


def sessions_per_day(*, user, start: date, end: date) -> list[dict[str, Any]]:
    sessions = UsageSession.objects.filter(day__gte=start, day__lte=end)
    if not user.is_superuser:
        sessions = sessions.filter(users_visible_q(user))
    rows = []
    for row in (
        sessions.values("day").annotate(sessions=Count("id"), events=Sum("events")).order_by("day")
    ):
        rows.append(row)
    return rows


def countries(*, user, start: date, end: date) -> list[dict[str, Any]]:
    """Requests and visitor-days per country over the user's datasets (a superuser's
    include requests about no dataset)."""
    scope = Q() if user.is_superuser else Q(dataset__in=stewarded_datasets(user))
    rows = (
        CountryDay.objects.filter(scope, day__gte=start, day__lte=end)
        .values("country")
        .annotate(events=Sum("events"), users=Sum("users"))
        .order_by("-events", "country")
    )
    return [{**row, "country": row["country"] or "unknown"} for row in rows]


# --- Version adoption ------------------------------------------------------------------


def version_adoption(*, dataset: Dataset, start: date, end: date) -> dict[str, Any]:
    """Each version's share of the dataset's reads per day (seed 000's
    `v_dataset_version_history` with adoption): who still reads a deprecated version."""
    versions = list(
        DatasetVersion.objects.filter(dataset=dataset)
        .exclude(status=VersionStatus.DRAFT)
        .order_by("-published_at", "-id")
        .values("pk", "version", "status", "is_current", "published_at", "deprecated_at")
    )
    reads: dict[int, dict[date, int]] = defaultdict(dict)
    totals: dict[date, int] = defaultdict(int)
    users: dict[int, int] = defaultdict(int)
    for row in VersionDay.objects.filter(dataset=dataset, day__gte=start, day__lte=end).values(
        "version_id", "day", "reads", "users"
    ):
        reads[row["version_id"]][row["day"]] = row["reads"]
        totals[row["day"]] += row["reads"]
        users[row["version_id"]] += row["users"]
    days = days_between(start, end)
    shares = {}
    for version in versions:
        per_day = reads.get(version["pk"], {})
        shares[version["version"]] = [
            round(100 * per_day.get(d, 0) / totals[d], 1) if totals.get(d) else 0 for d in days
        ]
        version["reads"] = sum(per_day.values())
        version["user_days"] = users.get(version["pk"], 0)
    return {"days": days, "shares": shares, "versions": versions}


# --- Panels for other pages ------------------------------------------------------------


def admin_home_panel_context(request, dataset) -> dict[str, Any] | None:
    if request is None or not request.user.is_authenticated:
        return None
    from catalog.charts import chart_from_rows

    end = today()
    start = end - timedelta(days=29)
    return {
        "summary": system_summary(user=request.user),
        "top": top_datasets(user=request.user, start=start, end=end, limit=5),
        "chart": chart_from_rows(
            daily_totals(user=request.user, start=start, end=end),
            x="day",
            y=["downloads", "api_calls", "errors"],
            labels=days_between(start, end),
            title="Last 30 days",
            empty_text="No API traffic in the last 30 days.",
        ),
    }


def dataset_panel_context(request, dataset) -> dict[str, Any] | None:
    if dataset is None:
        return None
    from catalog.charts import chart_from_rows

    end = today()
    start = end - timedelta(days=29)
    series = dataset_usage_series(dataset=dataset, start=start, end=end, granularity="day")
    return {
        "dataset": dataset,
        "downloads_30d": sum(row["downloads"] for row in series),
        "chart": chart_from_rows(
            series,
            x="period",
            y=["downloads", "api_calls"],
            title="Downloads and API calls, 30 days",
            empty_text="Nobody has used this dataset in the last 30 days.",
        ),
    }
