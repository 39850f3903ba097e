"""The steward's replication admin: rules saved through the services (same refusals as
the API), "Replicate now" on datasets, and the monitor drawn in Chromium."""

from __future__ import annotations

import pytest

from replication.models import Replica, ReplicationRule
from tests.browser.conftest import browser, page  # noqa: F401 - Chromium for the monitor
from tests.replication.conftest import CSV


def _rule_form(acme, region, **changes) -> dict:
    return {
        "organization": acme.pk,
        "pattern": "acme/platinum/*",
        "regions": [region.pk],
        "policy": "scheduled",
        "timezone": "UTC",
        "bandwidth_mbps": 100,
        "retention_days": 90,
        "priority": 100,
        "enabled": "on",
        **changes,
    }


@pytest.fixture
def steward_client(client, steward):
    client.force_login(steward)
    return client


def test_the_rule_form_refuses_a_bad_cron_with_the_services_message(steward_client, regions, acme):
    response = steward_client.post(
        "/admin/replication/replicationrule/add/",
        _rule_form(acme, regions["ap-southeast-1"], cron="at two"),
    )
    assert response.status_code == 200
    assert "is not a cron expression" in response.content.decode()
    assert not ReplicationRule.objects.exists()


def test_a_rule_saved_in_the_admin_is_scheduled_and_audited(steward_client, regions, acme):
    response = steward_client.post(
        "/admin/replication/replicationrule/add/",
        _rule_form(acme, regions["ap-southeast-1"], cron="0 * * * *", timezone="Asia/Manila"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = ReplicationRule.objects.get()
    assert rule.next_run_at is not None
    assert list(rule.regions.values_list("code", flat=True)) == ["ap-southeast-1"]
    listing = steward_client.get("/admin/replication/replicationrule/").content.decode()
    assert "matches nothing" in listing


def test_replicate_now_on_datasets_queues_their_current_versions(
    steward_client, dataset, publish, gold_rule
):
    publish(dataset, CSV)
    Replica.objects.all().delete()
    response = steward_client.post(
        "/admin/catalog/dataset/",
        {"action": "replicate_datasets", "_selected_action": [dataset.pk]},
        follow=True,
    )
    assert "2 copies queued." in response.content.decode()
    assert sorted(Replica.objects.values_list("region__code", flat=True)) == [
        "ap-southeast-1",
        "eu-west-1",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_monitor_shows_each_region_and_chromium_draws_its_charts(
    page,  # noqa: F811
    live_server,
    steward,
    dataset,
    publish,
    gold_rule,
    deliver,
    copy_due,
):
    publish(dataset, CSV)
    deliver()
    assert set(copy_due().values()) == {"verified"}

    page.goto(f"{live_server.url}/admin/login/?next=/admin/replication/replica/monitor/")
    page.fill("#id_username", "stella")
    page.fill("#id_password", "pw-stella")
    page.click("input[type=submit]")
    page.wait_for_selector("#monitor")

    cells = page.locator("#monitor .replica-status")
    assert sorted(cells.all_inner_texts()) == ["verified", "verified"]
    assert "acme/gold/txn_daily" in page.inner_text("#monitor")
    canvas = page.locator("canvas[data-drawn=true]").first
    canvas.wait_for()
    series = page.evaluate(
        "Array.from(document.querySelectorAll('canvas[data-drawn=true]'))"
        ".map(c => c.chart.data.datasets.map(d => [d.label, d.data[d.data.length - 1]]))"
    )
    throughput = dict(series[0])
    assert set(throughput) == {"ap-southeast-1", "eu-west-1"}
    assert throughput["eu-west-1"] > 0
    cost = dict(series[1])
    assert cost["eu-west-1"] > 0
