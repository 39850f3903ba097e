"""Regions refused for what they are, retention, late copies, and what other apps' pages
get from replication (the registry's panel and column)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog import registry
from catalog.exceptions import InvalidInput
from catalog.models import AuditEntry, DomainEvent
from replication import selectors
from replication.models import Region, Replica, ReplicaStatus
from replication.services import region_save, replicas_expire, replicas_late_record
from tests.replication.conftest import CSV
from versioning.models import DatasetVersion


def test_a_region_whose_endpoint_is_not_http_is_refused(regions, system):
    region = Region(code="bad", name="Bad", endpoint_url="ftp://example.com", bucket="b")
    with pytest.raises(InvalidInput, match="http:// or https://"):
        region_save(region=region, actor=system)
    with pytest.raises(IntegrityError), transaction.atomic():
        Region.objects.create(code="bad", name="Bad", endpoint_url="file:///etc", bucket="b")


def test_a_second_primary_is_refused_with_a_message(regions, system):
    with pytest.raises(InvalidInput, match="already a primary region"):
        region_save(region=Region(code="us-west-2", name="West", is_primary=True), actor=system)
    with pytest.raises(IntegrityError), transaction.atomic():
        Region.objects.create(code="us-west-2", name="West", is_primary=True)


def test_a_target_region_needs_storage_and_well_formed_variable_names(regions, system):
    with pytest.raises(InvalidInput) as refused:
        region_save(
            region=Region(code="x-1", name="X", access_key_env="MY KEY", secret_key_env="S"),
            actor=system,
        )
    assert set(refused.value.details) == {"access_key_env", "bucket"}


@pytest.fixture
def two_versions(dataset, publish, gold_rule, deliver, copy_due):
    old = publish(dataset, CSV).version
    deliver()
    copy_due()
    new = publish(dataset, CSV + b"2024-09-01,ST0001,1.00\n").version
    deliver()
    copy_due()
    return old, new


def test_retention_deletes_old_replicas_from_targets_never_the_current_or_the_primary(
    two_versions, regions, region_servers, bucket_keys
):
    old, new = two_versions
    assert replicas_expire() == 0  # within the 90 days
    DatasetVersion.objects.filter(pk=old.pk).update(
        published_at=timezone.now() - timedelta(days=91)
    )

    assert replicas_expire() == 2
    assert set(Replica.objects.filter(version=old).values_list("status", flat=True)) == {"expired"}
    assert set(Replica.objects.filter(version=new).values_list("status", flat=True)) == {"verified"}
    for server in region_servers.values():
        keys = server.keys("replicas", "acme/v1/gold/")
        assert keys == [new.key]
    assert old.key in bucket_keys("acme/v1/gold/")  # the primary keeps every version
    audits = AuditEntry.objects.filter(action="replica.expire")
    assert sorted(a.details["region"] for a in audits) == ["ap-southeast-1", "eu-west-1"]


def test_retention_keeps_a_version_a_region_manifest_still_lists(
    dataset, publish, gold_rule, regions, deliver, copy_due
):
    old = publish(dataset, CSV).version
    deliver()
    copy_due()
    publish(dataset, CSV + b"2024-09-01,ST0001,1.00\n")  # not copied yet
    DatasetVersion.objects.filter(pk=old.pk).update(
        published_at=timezone.now() - timedelta(days=91)
    )

    assert replicas_expire() == 0
    assert set(Replica.objects.filter(version=old).values_list("status", flat=True)) == {"verified"}


def test_a_copy_unverified_after_fifteen_minutes_is_reported_late_once(
    dataset, publish, gold_rule, deliver
):
    publish(dataset, CSV)
    deliver()
    Replica.objects.update(queued_at=timezone.now() - timedelta(minutes=16))

    assert replicas_late_record() == 2
    assert replicas_late_record() == 0
    late = DomainEvent.objects.filter(topic="replica.late")
    assert sorted(e.payload["region"] for e in late) == ["ap-southeast-1", "eu-west-1"]
    assert all(e.payload["minutes"] >= 16 for e in late)


def test_lag_counts_copies_verified_within_the_target_and_minutes_beyond(two_versions):
    old, new = two_versions
    Replica.objects.filter(version=old).update(verified_at=old.published_at + timedelta(minutes=25))
    lags = {lag.region.code: lag for lag in selectors.region_lags()}
    assert lags["eu-west-1"].copies_30d == 2
    assert lags["eu-west-1"].within_target_share == 0.5
    assert lags["eu-west-1"].minutes_over_target_30d == pytest.approx(10, abs=0.1)
    assert selectors.versions_within_target_share() == 0.5


def test_the_dataset_panel_and_health_column_show_each_regions_copy(two_versions, dataset):
    old, new = two_versions
    Replica.objects.filter(version=new, region__code="eu-west-1").update(
        status=ReplicaStatus.FAILED, last_error="EU unreachable"
    )
    [panel] = [
        p
        for p in registry.panels_render(registry.DATASET_PAGE, request=None, dataset=dataset)
        if p.name == "replication"
    ]
    assert "ap-southeast-1" in panel.html and "EU unreachable" in panel.html
    table = registry.columns_collect(registry.HEALTH_DASHBOARD, [dataset])
    assert table.values["replication"][dataset.pk] == "1/2 verified, 1 failed"
