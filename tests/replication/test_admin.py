"""The steward's replication admin: rules saved through the services (same refusals as
the API) and "Replicate now" on datasets. The monitor is drawn in Chromium in
tests/browser/test_replication_monitor.py."""

from __future__ import annotations

import pytest

from replication.models import Replica, ReplicationRule
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


def test_the_cost_report_lists_each_dataset_and_region_for_the_month_asked(
    steward_client, dataset, publish, gold_rule, deliver, copy_due
):
    from django.utils import timezone

    publish(dataset, CSV)
    deliver()
    copy_due()
    month = timezone.localdate().strftime("%Y-%m")
    page = steward_client.get(f"/admin/replication/replica/costs/?month={month}")
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("acme/gold/txn_daily") == 2
    assert "eu-west-1" in html and "ap-southeast-1" in html
    empty = steward_client.get("/admin/replication/replica/costs/?month=2020-01").content
    assert b"No replication cost in January 2020." in empty
    assert steward_client.get("/admin/replication/replica/costs/?month=nonsense").status_code == 200


def test_every_regions_s3_client_sends_checksums_only_when_required(regions):
    from replication.engine import region_store

    for code in ("ap-southeast-1", "eu-west-1"):
        config = region_store(regions[code]).client.meta.config
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"
