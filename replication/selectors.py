"""Reads for the monitor, the API and other apps' pages: lag, costs, the state of each
dataset in each region.

Costs follow seed 000's prices: transfer is the bytes every copy run moved, in GB, times
the source region's transfer price; storage is the GB a replica holds in a target,
times that region's price per GB-month, prorated by the days of the month it was held
(from verification to expiry). A GB here is 2^30 bytes, as cloud invoices count it.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from catalog.models import Dataset, Organization
from replication.models import CopyOutcome, CopyRun, Region, Replica, ReplicaStatus
from versioning.models import DatasetVersion, VersionStatus

GB = 1024**3
TARGET = timedelta(minutes=15)
UNFINISHED = (ReplicaStatus.PENDING, ReplicaStatus.COPYING, ReplicaStatus.FAILED)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = timezone.make_aware(datetime(month.year, month.month, 1))
    days = calendar.monthrange(month.year, month.month)[1]
    return start, start + timedelta(days=days)


def _held_seconds(replica: Replica, start: datetime, end: datetime, now: datetime) -> float:
    if replica.verified_at is None:
        return 0.0
    held_from = max(replica.verified_at, start)
    held_to = min(replica.expired_at or now, end, now)
    return max(0.0, (held_to - held_from).total_seconds())


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


@dataclass
class CostRow:
    organization: str
    dataset: str
    region: str
    transfer_bytes: int = 0
    transfer_cost: float = 0.0
    stored_gb_months: float = 0.0
    storage_cost: float = 0.0

    @property
    def total_cost(self) -> float:
        return self.transfer_cost + self.storage_cost

    def as_dict(self) -> dict:
        return {
            "organization": self.organization,
            "dataset": self.dataset,
            "region": self.region,
            "transfer_bytes": self.transfer_bytes,
            "transfer_cost_usd": _money(self.transfer_cost),
            "stored_gb_months": round(self.stored_gb_months, 6),
            "storage_cost_usd": _money(self.storage_cost),
            "total_cost_usd": _money(self.total_cost),
        }


def cost_report(
    *, organizations: Iterable[Organization] | None, month: date, now: datetime | None = None
) -> list[CostRow]:
    """The month's replication cost per dataset and target region, in a fixed number of
    queries."""
    now = now or timezone.now()
    start, end = month_bounds(month)
    month_seconds = (end - start).total_seconds()
    rows: dict[tuple[int, int], CostRow] = {}
    replicas = Replica.objects.filter(verified_at__lt=end).filter(
        Q(expired_at__isnull=True) | Q(expired_at__gte=start)
    )
    runs = CopyRun.objects.filter(started_at__gte=start, started_at__lt=end)
    if organizations is not None:
        replicas = replicas.filter(version__dataset__organization__in=organizations)
        runs = runs.filter(replica__version__dataset__organization__in=organizations)
    regions = {r.pk: r for r in Region.objects.all()}

    def row(dataset: Dataset, region_id: int) -> CostRow:
        key = (dataset.pk, region_id)
        if key not in rows:
            rows[key] = CostRow(
                organization=dataset.organization.slug,
                dataset=dataset.path,
                region=regions[region_id].code,
            )
        return rows[key]

    for replica in replicas.select_related("version__dataset__organization"):
        seconds = _held_seconds(replica, start, end, now)
        if not seconds:
            continue
        gb_months = replica.size_bytes / GB * seconds / month_seconds
        entry = row(replica.version.dataset, replica.region_id)
        entry.stored_gb_months += gb_months
        entry.storage_cost += gb_months * float(regions[replica.region_id].storage_price_gb_month)
    moved = runs.values("replica__version__dataset", "target_region", "source_region").annotate(
        total=Sum("bytes_transferred")
    )
    datasets = Dataset.objects.select_related("organization").in_bulk(
        {m["replica__version__dataset"] for m in moved}
    )
    for m in moved:
        total = m["total"] or 0
        entry = row(datasets[m["replica__version__dataset"]], m["target_region"])
        entry.transfer_bytes += total
        entry.transfer_cost += total / GB * float(regions[m["source_region"]].transfer_price_gb)
    return sorted(rows.values(), key=lambda r: (r.organization, r.dataset, r.region))


@dataclass
class RegionLag:
    region: Region
    pending_copies: int = 0
    pending_bytes: int = 0
    oldest_pending_seconds: float | None = None
    copies_30d: int = 0
    within_target_30d: int = 0
    minutes_over_target_30d: float = 0.0
    failed_copies: int = 0

    @property
    def within_target_share(self) -> float | None:
        return self.within_target_30d / self.copies_30d if self.copies_30d else None


def region_lags(
    *, organizations: Iterable[Organization] | None = None, now: datetime | None = None
) -> list[RegionLag]:
    """Per target region: what is waiting, for how long, and over the last 30 days the
    share of copies verified within 15 minutes of publishing (and the minutes beyond)."""
    now = now or timezone.now()
    replicas = Replica.objects.all()
    if organizations is not None:
        replicas = replicas.filter(version__dataset__organization__in=organizations)
    lags = {
        r.pk: RegionLag(region=r) for r in Region.objects.filter(is_primary=False).order_by("code")
    }
    waiting = (
        replicas.filter(status__in=UNFINISHED)
        .values("region")
        .annotate(
            count=Count("pk"),
            size=Sum("size_bytes"),
            copied=Sum("bytes_copied"),
            oldest=Min("queued_at"),
            failed=Count("pk", filter=Q(status=ReplicaStatus.FAILED)),
        )
    )
    for w in waiting:
        lag = lags.get(w["region"])
        if lag is None:
            continue
        lag.pending_copies = w["count"]
        lag.pending_bytes = max(0, (w["size"] or 0) - (w["copied"] or 0))
        lag.oldest_pending_seconds = (now - w["oldest"]).total_seconds()
        lag.failed_copies = w["failed"]
    recent = (
        replicas.filter(version__published_at__gte=now - timedelta(days=30))
        .exclude(status=ReplicaStatus.EXPIRED, verified_at__isnull=True)
        .values("region", "verified_at", "version__published_at", "status")
    )
    for r in recent:
        lag = lags.get(r["region"])
        if lag is None:
            continue
        lag.copies_30d += 1
        took = (r["verified_at"] or now) - r["version__published_at"]
        if r["verified_at"] is not None and took <= TARGET:
            lag.within_target_30d += 1
        else:
            lag.minutes_over_target_30d += max(0.0, (took - TARGET).total_seconds() / 60)
    return list(lags.values())


def versions_within_target_share(
    *, organizations: Iterable[Organization] | None = None, now: datetime | None = None
) -> float | None:
    """Of the versions replicated in the last 30 days, the share verified in every
    target within 15 minutes of publishing."""
    now = now or timezone.now()
    replicas = Replica.objects.filter(version__published_at__gte=now - timedelta(days=30))
    if organizations is not None:
        replicas = replicas.filter(version__dataset__organization__in=organizations)
    by_version: dict[int, bool] = {}
    for r in replicas.values("version", "verified_at", "version__published_at"):
        ok = r["verified_at"] is not None and r["verified_at"] - r["version__published_at"] <= (
            TARGET
        )
        by_version[r["version"]] = by_version.get(r["version"], True) and ok
    return sum(by_version.values()) / len(by_version) if by_version else None


@dataclass
class MonitorCell:
    region: Region
    held_version: str = ""
    status: str = ""
    lag_seconds: float | None = None
    versions_behind: int | None = None
    failures: int = 0
    last_error: str = ""
    bytes_this_month: int = 0
    cost_this_month: float = 0.0


@dataclass
class MonitorRow:
    dataset: Dataset
    current_version: str
    cells: list[MonitorCell] = field(default_factory=list)


def monitor_rows(
    *, organizations: Iterable[Organization] | None, now: datetime | None = None
) -> list[MonitorRow]:
    """The replication monitor (seed 000's v_replication_monitor): one row per dataset
    that has replicas, one cell per target region."""
    now = now or timezone.now()
    targets = list(Region.objects.filter(is_primary=False).order_by("code"))
    replicas = Replica.objects.select_related("version").order_by("version__published_at")
    if organizations is not None:
        replicas = replicas.filter(version__dataset__organization__in=organizations)
    by_dataset: dict[int, list[Replica]] = defaultdict(list)
    for replica in replicas:
        by_dataset[replica.version.dataset_id].append(replica)
    if not by_dataset:
        return []
    datasets = Dataset.objects.select_related("organization").in_bulk(list(by_dataset))
    versions = defaultdict(list)
    for v in (
        DatasetVersion.objects.filter(dataset_id__in=list(by_dataset))
        .exclude(status__in=[VersionStatus.DRAFT, VersionStatus.ARCHIVED])
        .values("dataset", "version", "published_at", "is_current")
        .order_by("published_at")
    ):
        versions[v["dataset"]].append(v)
    month = now.date().replace(day=1)
    start, _ = month_bounds(month)
    costs = {
        (c.dataset, c.organization, c.region): c
        for c in cost_report(organizations=organizations, month=month, now=now)
    }
    failures = defaultdict(int)
    for f in (
        CopyRun.objects.filter(
            started_at__gte=start,
            outcome__in=[CopyOutcome.RETRY, CopyOutcome.FAILED],
            replica__version__dataset_id__in=list(by_dataset),
        )
        .values("replica__version__dataset", "target_region")
        .annotate(n=Count("pk"))
    ):
        failures[(f["replica__version__dataset"], f["target_region"])] = f["n"]
    rows = []
    for dataset_id, dataset_replicas in by_dataset.items():
        dataset = datasets[dataset_id]
        history = versions[dataset_id]
        current = next((v for v in history if v["is_current"]), None)
        row = MonitorRow(dataset=dataset, current_version=current["version"] if current else "")
        for region in targets:
            mine = [r for r in dataset_replicas if r.region_id == region.pk]
            if not mine:
                continue
            verified = [r for r in mine if r.status == ReplicaStatus.VERIFIED]
            held = max(verified, key=lambda r: r.version.published_at, default=None)
            newest = mine[-1]
            cell = MonitorCell(region=region)
            cell.held_version = held.version.version if held else ""
            for_current = next(
                (r for r in mine if current and r.version.version == current["version"]), None
            )
            cell.status = (for_current or newest).status
            if current:
                if held and held.version.version == current["version"]:
                    cell.lag_seconds = 0.0
                    cell.versions_behind = 0
                else:
                    cell.lag_seconds = (now - current["published_at"]).total_seconds()
                    since = held.version.published_at if held else None
                    cell.versions_behind = sum(
                        1
                        for v in history
                        if (since is None or v["published_at"] > since)
                        and v["published_at"] <= current["published_at"]
                    )
            cell.failures = failures[(dataset_id, region.pk)]
            cell.last_error = next((r.last_error for r in reversed(mine) if r.last_error), "")
            cost = costs.get((dataset.path, dataset.organization.slug, region.code))
            if cost:
                cell.bytes_this_month = cost.transfer_bytes
                cell.cost_this_month = cost.total_cost
            row.cells.append(cell)
        rows.append(row)
    return sorted(rows, key=lambda r: (r.dataset.organization.slug, r.dataset.path))


def daily_series(
    *, organizations: Iterable[Organization] | None, days: int = 30, now: datetime | None = None
) -> tuple[list[date], list[dict]]:
    """Per day and target region over the last `days`: throughput (MB/s over the copy
    runs that day) and cost (the day's transfer plus a day's storage of what was held)."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    axis = [today - timedelta(days=days - 1 - i) for i in range(days)]
    start = timezone.make_aware(datetime.combine(axis[0], datetime.min.time()))
    runs = CopyRun.objects.filter(started_at__gte=start, finished_at__isnull=False)
    replicas = Replica.objects.filter(verified_at__isnull=False).filter(
        Q(expired_at__isnull=True) | Q(expired_at__gte=start)
    )
    if organizations is not None:
        runs = runs.filter(replica__version__dataset__organization__in=organizations)
        replicas = replicas.filter(version__dataset__organization__in=organizations)
    regions = {r.pk: r for r in Region.objects.all()}
    moved = defaultdict(lambda: [0, 0.0, 0.0])  # bytes, seconds, transfer cost
    for run in runs.values(
        "started_at", "target_region", "source_region", "bytes_transferred", "duration_seconds"
    ):
        day = timezone.localdate(run["started_at"])
        entry = moved[(day, run["target_region"])]
        entry[0] += run["bytes_transferred"]
        entry[1] += run["duration_seconds"] or 0.0
        entry[2] += (
            run["bytes_transferred"] / GB * float(regions[run["source_region"]].transfer_price_gb)
        )
    stored = defaultdict(float)
    for r in replicas.values("region", "size_bytes", "verified_at", "expired_at"):
        price = float(regions[r["region"]].storage_price_gb_month)
        for day in axis:
            begin = timezone.make_aware(datetime.combine(day, datetime.min.time()))
            finish = min(begin + timedelta(days=1), now)
            held_to = min(r["expired_at"] or finish, finish)
            seconds = (held_to - max(r["verified_at"], begin)).total_seconds()
            if seconds > 0:
                month_days = calendar.monthrange(day.year, day.month)[1]
                stored[(day, r["region"])] += (
                    r["size_bytes"] / GB * price * seconds / (86400 * month_days)
                )
    rows = []
    for region_id, region in regions.items():
        if region.is_primary:
            continue
        for day in axis:
            b, s, transfer = moved.get((day, region_id), (0, 0.0, 0.0))
            rows.append(
                {
                    "day": day,
                    "region": region.code,
                    "throughput_mbs": round(b / s / 1e6, 3) if s else 0,
                    "cost_usd": round(transfer + stored.get((day, region_id), 0.0), 6),
                }
            )
    return axis, rows


# --- Parts of other apps' pages (catalog.registry) -------------------------------------


def dataset_panel_context(request, dataset: Dataset | None) -> dict | None:
    """The dataset page's replication panel: each target region's copy of the current
    version. Nothing for a dataset without replicas (or without a dataset)."""
    if dataset is None:
        return None
    current = DatasetVersion.objects.filter(dataset=dataset, is_current=True).first()
    replicas = list(
        Replica.objects.filter(version__dataset=dataset)
        .select_related("region", "version")
        .order_by("region__code", "-version__published_at")
    )
    if not replicas:
        return None
    regions: dict[str, dict] = {}
    for replica in replicas:
        entry = regions.setdefault(
            replica.region.code,
            {"region": replica.region, "current": None, "held": None},
        )
        if current and replica.version_id == current.pk:
            entry["current"] = replica
        if replica.status == ReplicaStatus.VERIFIED and entry["held"] is None:
            entry["held"] = replica
    return {"dataset": dataset, "current": current, "regions": list(regions.values())}


def health_column_values(datasets: Sequence[Dataset]) -> dict[int, str]:
    """Per dataset: how many target regions hold its current version ("2/2 verified")."""
    counts = (
        Replica.objects.filter(
            version__dataset__in=[d.pk for d in datasets], version__is_current=True
        )
        .exclude(status=ReplicaStatus.EXPIRED)
        .values("version__dataset")
        .annotate(
            total=Count("pk"),
            verified=Count("pk", filter=Q(status=ReplicaStatus.VERIFIED)),
            failed=Count("pk", filter=Q(status=ReplicaStatus.FAILED)),
        )
    )
    values = {}
    for c in counts:
        text = f"{c['verified']}/{c['total']} verified"
        if c["failed"]:
            text += f", {c['failed']} failed"
        values[c["version__dataset"]] = text
    return values
