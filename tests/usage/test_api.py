"""The usage API: a dataset's usage for its stewards, the summary, the COUNTER Dataset
Report, CSV exports, and a clear 400 for every bad parameter."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from tests.api.conftest import error_of
from tests.usage.conftest import BROWSER, SCRIPT
from usage.services.ingest import events_write
from usage.services.rollups import rollups_run_due

pytestmark = pytest.mark.django_db

USAGE = "/api/v1/datasets/gold/txn_daily/usage/"
DSR = "/api/v1/usage/reports/dsr/"
EXPORT = "/api/v1/usage/export/"


@pytest.fixture
def used(published):
    """Today: two downloads a minute apart in a browser and one by a script; yesterday a
    detail view."""
    today = timezone.now().date()
    early = datetime.combine(today, time(0, 30), tzinfo=UTC)
    version = published.versions.get()

    def event(at, kind, ua, client):
        return {
            "id": uuid.uuid4().hex,
            "t": at.timestamp(),
            "organization": published.organization_id,
            "dataset": published.pk,
            "version": version.pk,
            "kind": kind,
            "status": 200,
            "ms": 12,
            "bytes": 300,
            "ua": ua,
            "client": client,
        }

    events_write(
        records=[
            event(early, "download", BROWSER, "a"),
            event(early + timedelta(minutes=1), "download", BROWSER, "a"),
            event(early, "download", SCRIPT, "s"),
            event(early - timedelta(days=1), "detail", BROWSER, "a"),
        ]
    )
    rollups_run_due()
    return published


def test_a_steward_reads_a_datasets_usage_by_day(used, steward, as_user):
    response = as_user(steward).get(f"{USAGE}?window=7d&granularity=day")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dataset"] == "gold/txn_daily" and body["organization"] == "acme"
    assert len(body["series"]) == 7
    assert body["series"][-1]["period"] == timezone.now().date().isoformat()
    assert body["series"][-1]["downloads"] == 3 and body["series"][-1]["unique_users"] == 2
    assert body["series"][-2]["investigations"] == 1
    assert body["totals"]["downloads"] == 3 and body["totals"]["investigations"] == 4
    assert body["versions"] == [{"version": "1.0.0", "status": "active", "reads": 3, "users": 2}]


def test_usage_by_month_sums_the_days(used, steward, as_user):
    body = as_user(steward).get(f"{USAGE}?window=90d&granularity=month").json()

    assert 3 <= len(body["series"]) <= 4
    assert sum(row["downloads"] for row in body["series"]) == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("window=30", "window"),
        ("window=0d", "window"),
        ("window=367d", "window"),
        ("window=1y", "window"),
        ("granularity=hour", "granularity"),
        ("granularity=minute", "granularity"),
    ],
)
def test_an_unknown_window_or_granularity_is_refused_with_the_valid_values(
    used, steward, as_user, query, field
):
    response = as_user(steward).get(f"{USAGE}?{query}")

    assert response.status_code == 400
    error = error_of(response)
    assert field in error["details"]
    assert ("1d to 366d" if field == "window" else "day, week, month") in error["message"]


def test_a_member_who_is_not_a_steward_may_not_read_usage(used, viewer, as_user):
    response = as_user(viewer).get(USAGE)

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_another_organisations_steward_learns_nothing_about_a_private_dataset(
    used, outsider, as_user, api
):
    response = as_user(outsider).get(USAGE)
    assert response.status_code == 404
    assert "txn_daily" not in str(as_user(outsider).get(DSR + "?begin_date=2020-01").json())
    assert api.get(USAGE).status_code == 401


def test_the_summary_counts_today_for_the_datasets_a_steward_stewards(used, steward, as_user):
    body = as_user(steward).get("/api/v1/usage/summary/").json()

    assert body["datasets"] == 1 and body["versions"] == 1 and body["stale_datasets"] == 0
    assert body["downloads_today"] == 3 and body["errors_today"] == 0
    assert body["active_users_today"] == 2
    assert body["top_datasets_7d"][0]["dataset"] == "gold/txn_daily"


def test_the_dataset_report_has_counters_sushi_shape_and_counts(used, steward, as_user):
    today = timezone.now().date()
    response = as_user(steward).get(
        f"{DSR}?begin_date={today - timedelta(days=40)}&end_date={today}"
    )

    assert response.status_code == 200, response.content
    report = response.json()
    header = report["report-header"]
    assert header["report-id"] == "DSR" and header["release"] == "rd1"
    assert header["reporting-period"]["end-date"] == today.isoformat()
    by_method = {entry["access-method"]: entry for entry in report["report-datasets"]}
    assert set(by_method) == {"regular", "machine"}
    regular = by_method["regular"]
    assert regular["dataset-id"] == [{"type": "proprietary", "value": "acme:gold/txn_daily"}]
    counts: dict[str, int] = {}
    for month in regular["performance"]:
        for instance in month["instance"]:
            counts[instance["metric-type"]] = (
                counts.get(instance["metric-type"], 0) + (instance["count"])
            )
    assert counts == {
        "total-dataset-investigations": 3,
        "unique-dataset-investigations": 2,
        "total-dataset-requests": 2,
        "unique-dataset-requests": 1,
    }


@pytest.mark.parametrize(
    "query",
    [
        "begin_date=2026-01-01&end_date=someday",
        "begin_date=yesterday&end_date=2026-01-01",
        "begin_date=2026-13&end_date=2026-12",
        "begin_date=2026-02-01&end_date=2026-01-31",
        "begin_date=2000-01-01&end_date=2026-01-01",
    ],
)
def test_a_report_with_malformed_reversed_or_too_distant_dates_is_refused(
    used, steward, as_user, query
):
    response = as_user(steward).get(f"{DSR}?{query}")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"


def test_the_rollups_export_as_csv(used, steward, as_user):
    today = timezone.now().date()
    response = as_user(steward).get(f"{EXPORT}?table=datasets&begin_date={today}&end_date={today}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    assert rows[0]["organization"] == "acme" and rows[0]["dataset"] == "txn_daily"
    assert rows[0]["downloads"] == "3"


def test_a_report_without_dates_covers_this_month_so_far(used, steward, as_user):
    today = timezone.now().date()
    period = as_user(steward).get(DSR).json()["report-header"]["reporting-period"]

    assert period == {"begin-date": today.replace(day=1).isoformat(), "end-date": str(today)}


def test_a_member_who_stewards_nothing_gets_no_reports(used, viewer, as_user):
    response = as_user(viewer).get(DSR)

    assert response.status_code == 403
    assert "steward" in error_of(response)["message"]


def test_an_unknown_export_table_is_refused(used, steward, as_user):
    response = as_user(steward).get(f"{EXPORT}?table=secrets&begin_date=2026-01")

    assert response.status_code == 400
    assert "datasets" in error_of(response)["message"]
