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
