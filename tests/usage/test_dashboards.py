"""The dashboards: what each shows, in how many queries, and Chromium drawing their
charts from our own static files."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from catalog import registry
from catalog.registry import Column
from tests.usage.conftest import BROWSER, SCRIPT
from usage import selectors
from usage.services.ingest import events_write
from usage.services.rollups import rollups_run_due
from usage.services.segments import segments_compute


def _traffic(dataset, user, *, days: int = 3) -> None:
    """Each of the last `days` days: a download by `user` in a browser, one by a script,
    and one 500."""
    version = dataset.versions.get()
    today = timezone.now().date()
    records = []
    for back in range(days):
        at = datetime.combine(today - timedelta(days=back), time(0, 5), tzinfo=UTC)
        for kind, status, ua, who in [
            ("download", 200, BROWSER, user.pk),
            ("download", 200, SCRIPT, None),
            ("detail", 500, BROWSER, user.pk),
        ]:
            records.append(
                {
                    "id": uuid.uuid4().hex,
                    "t": at.timestamp(),
                    "organization": dataset.organization_id,
                    "dataset": dataset.pk,
                    "version": version.pk,
                    "user": who,
                    "kind": kind,
                    "status": status,
                    "ms": 40,
                    "bytes": 1000,
                    "ua": ua,
                    "client": "x",
                    "country": "NZ",
                }
            )
    events_write(records=records)
    rollups_run_due()
    segments_compute(day=today)


@pytest.fixture
def health_column(monkeypatch):
    """A column another app contributes to the health dashboard (replication, say)."""
    monkeypatch.setitem(registry._columns, registry.HEALTH_DASHBOARD, {})
    registry.column_register(
        registry.HEALTH_DASHBOARD,
        Column(
            name="replicas",
            title="Replicas",
            values=lambda datasets: {d.pk: "2 of 2" for d in datasets},
        ),
    )


@pytest.mark.django_db
def test_the_health_rows_cost_two_queries_however_many_datasets(
    published, steward, django_assert_num_queries, system
):
    from catalog.services import dataset_create

    for index in range(5):
        dataset_create(
            organization=published.organization,
            layer="silver",
            name=f"d{index}",
            actor=system,
            freshness_hours=1,
        )
    _traffic(published, steward)
    datasets = list(selectors.stewarded_datasets(steward))

    with django_assert_num_queries(2):
        rows = selectors.dataset_health_rows(datasets=datasets)

    by_name = {row.dataset.name: row for row in rows}
    assert by_name["txn_daily"].downloads_7d == 6 and by_name["txn_daily"].errors_30d == 3
    assert by_name["txn_daily"].current_version == "1.0.0"
    assert round(by_name["txn_daily"].error_rate, 3) == round(3 / 9, 3)
    # Never published, but expected every hour: stale.
    assert all(by_name[f"d{i}"].is_stale for i in range(5))
    assert not by_name["txn_daily"].is_stale


@pytest.mark.django_db
def test_the_health_dashboard_lists_the_stewards_datasets_with_contributed_columns(
    published, steward, outsider, client, health_column
):
    _traffic(published, steward)
    client.force_login(steward)

    page = client.get("/admin/usage/datasetday/health/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "acme:gold/txn_daily" in html and "2 of 2" in html and "Replicas" in html
    client.force_login(outsider)
    assert "txn_daily" not in client.get("/admin/usage/datasetday/health/").content.decode()
    assert client.get(f"/admin/usage/datasetday/adoption/{published.pk}/").status_code == 404


@pytest.mark.django_db
def test_a_viewer_without_a_steward_role_cannot_open_the_dashboards(published, viewer, client):
    client.force_login(viewer)

    assert client.get("/admin/usage/datasetday/activity/").status_code == 404
    assert client.get("/admin/usage/datasetday/health/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_chromium_draws_every_dashboards_charts(page, live_server, steward, published):
    _traffic(published, steward)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "stella")
    page.fill("#id_password", "pw-stella")
    page.click("input[type=submit]")

    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#system-summary")
    assert "2 downloads today" in " ".join(page.inner_text("#system-summary").split())
    page.wait_for_selector("#panel-usage canvas[data-drawn=true]")

    page.click("text=Dataset health")
    page.wait_for_selector("#dataset-health")
    drawn = page.locator("canvas[data-drawn=true]")
    drawn.first.wait_for()
    assert drawn.count() == 4
    series = page.evaluate(
        "Array.from(document.querySelectorAll('canvas[data-drawn=true]'))"
        ".map(c => c.chart.data.datasets.map(d => d.data.reduce((a, b) => a + b, 0)))"
    )
    assert series[0] == [6, 9]  # downloads and API calls over the 30 days
    assert series[1] == [3]  # errors

    page.click("text=User activity")
    page.wait_for_selector("#top-users")
    page.locator("canvas[data-drawn=true]").first.wait_for()
    assert page.locator("canvas[data-drawn=true]").count() == 4  # sessions, segments, countries
    assert "stella" in page.inner_text("#top-users")

    page.goto(f"{live_server.url}/admin/usage/datasetday/adoption/{published.pk}/")
    page.locator("canvas[data-drawn=true]").first.wait_for()
    shares = page.evaluate(
        "document.querySelector('canvas[data-drawn=true]').chart.data.datasets"
        ".map(d => [d.label, d.data[d.data.length - 1]])"
    )
    assert shares == [["1.0.0", 100]]
