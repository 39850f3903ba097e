"""Usage reports for harvesters and spreadsheets: the COUNTER-SUSHI Dataset Report and
CSV exports of the rollups.

The Dataset Report follows the COUNTER Code of Practice for Research Data (release
`rd1`, the JSON that Make Data Count, Zenodo and Dataverse exchange): a header with the
reporting period, then one entry per dataset and access method with its monthly
`performance`, each month listing the metrics that are not zero.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from catalog.models import Dataset
from usage import partitions
from usage.models import CounterDay, DatasetDay, UserDay, VersionDay
from usage.selectors import SERIES_FIELDS

PLATFORM = "Dataset Publisher"
METRICS = (
    ("total_investigations", "total-dataset-investigations"),
    ("unique_investigations", "unique-dataset-investigations"),
    ("total_requests", "total-dataset-requests"),
    ("unique_requests", "unique-dataset-requests"),
)


def _month_end(month: date) -> date:
    return partitions.month_add(month, 1) - timedelta(days=1)


def dataset_report(
    *, datasets: Sequence[Dataset], begin: date, end: date, filters: dict[str, str]
) -> dict[str, Any]:
    """The DSR for `datasets` from `begin` to `end` (inclusive)."""
    by_id = {d.pk: d for d in datasets}
    rows = (
        CounterDay.objects.filter(dataset_id__in=list(by_id), day__gte=begin, day__lte=end)
        .annotate(month=TruncMonth("day"))
        .values("dataset_id", "access_method", "month")
        .annotate(**{name: Sum(name) for name, _ in METRICS})
        .order_by("dataset_id", "access_method", "month")
    )
    performance: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in rows:
        month = row["month"]
        month = month.date() if hasattr(month, "date") else month
        instances = [
            {"access-method": row["access_method"], "metric-type": metric, "count": row[name]}
            for name, metric in METRICS
            if row[name]
        ]
        if instances:
            performance[(row["dataset_id"], row["access_method"])].append(
                {
                    "period": {
                        "begin-date": max(month, begin).isoformat(),
                        "end-date": min(_month_end(month), end).isoformat(),
                    },
                    "instance": instances,
                }
            )
    report_datasets = []
    for (dataset_id, method), months in sorted(performance.items()):
        dataset = by_id[dataset_id]
        report_datasets.append(
            {
                "dataset-title": dataset.title or dataset.path,
                "dataset-id": [
                    {"type": "proprietary", "value": f"{dataset.organization.slug}:{dataset.path}"}
                ],
                "publisher": dataset.organization.name,
                "publisher-id": [{"type": "proprietary", "value": dataset.organization.slug}],
                "platform": PLATFORM,
                "yop": str(dataset.created_at.year),
                "data-type": "dataset",
                "access-method": method,
                "performance": months,
            }
        )
    return {
        "report-header": {
            "report-name": "dataset report",
            "report-id": "DSR",
            "release": "rd1",
            "created": timezone.now().isoformat().replace("+00:00", "Z"),
            "created-by": PLATFORM,
            "reporting-period": {"begin-date": begin.isoformat(), "end-date": end.isoformat()},
            "report-filters": [{"name": k, "value": v} for k, v in sorted(filters.items())],
            "report-attributes": [],
            "exceptions": [],
        },
        "report-datasets": report_datasets,
    }


# --- CSV -------------------------------------------------------------------------------

EXPORTS: dict[str, tuple[type, tuple[str, ...]]] = {
    "datasets": (
        DatasetDay,
        (
            "day",
            "dataset__organization__slug",
            "dataset__layer",
            "dataset__name",
            *SERIES_FIELDS,
            "p50_ms",
            "p95_ms",
        ),
    ),
    "counter": (
        CounterDay,
        (
            "day",
            "dataset__organization__slug",
            "dataset__layer",
            "dataset__name",
            "access_method",
            "total_investigations",
            "unique_investigations",
            "total_requests",
            "unique_requests",
        ),
    ),
    "versions": (
        VersionDay,
        (
            "day",
            "dataset__organization__slug",
            "dataset__layer",
            "dataset__name",
            "version__version",
            "reads",
            "users",
        ),
    ),
    "users": (
        UserDay,
        (
            "day",
            "user__username",
            "events",
            "downloads",
            "exports",
            "datasets",
            "sessions",
            "bytes",
            "errors",
        ),
    ),
}


def _header(field: str) -> str:
    return {
        "dataset__organization__slug": "organization",
        "dataset__layer": "layer",
        "dataset__name": "dataset",
        "version__version": "version",
        "user__username": "user",
    }.get(field, field)


class _Echo:
    def write(self, value: str) -> str:
        return value


def export_rows(*, table: str, rows: QuerySet) -> Iterator[str]:
    """CSV lines of one rollup table, streamed from a server-side cursor."""
    _, fields = EXPORTS[table]
    writer = csv.writer(_Echo())
    yield writer.writerow([_header(f) for f in fields])
    for row in rows.order_by("day", "pk").values_list(*fields).iterator(chunk_size=2000):
        yield writer.writerow(row)
