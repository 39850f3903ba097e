"""Faults, through the services against real S3 servers: a connection cut mid-copy, a
byte flipped in a verified replica, a region down for a long time. Nothing is ever
marked verified that is not, and no partial object reaches a final key."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.utils import timezone

from catalog.models import DomainEvent
from replication.models import CopyRun, Replica, ReplicaStatus
from replication.services import region_manifest_latest, replica_copy, replicas_scrub
from tests.faults import FlakyProxy
from tests.replication.conftest import CSV


@pytest.fixture
def eu_proxy(regions, region_servers):
    """The EU region reached through a TCP proxy that can cut its connections."""
    proxy = FlakyProxy(urlparse(region_servers["eu"].url).port)
    eu = regions["eu-west-1"]
    eu.endpoint_url = proxy.url
    eu.save()
    yield proxy
    proxy.close()


def _due_now(replica: Replica) -> None:
    """The backoff is over (as the tick would find it later)."""
    Replica.objects.filter(pk=replica.pk).update(next_attempt_at=timezone.now())


def _eu(version) -> Replica:
    return Replica.objects.select_related("region").get(version=version, region__code="eu-west-1")


def test_a_connection_cut_mid_copy_is_retried_and_leaves_nothing_half_written(
    dataset, publish, gold_rule, eu_proxy, region_servers, deliver
):
    version = publish(dataset, CSV).version
    deliver()
    eu_proxy.cut_after = len(CSV) // 2  # the upload dies half-way, and stays dead

    replica = _eu(version)
    assert replica_copy(replica_id=replica.pk) == "retry"
    assert eu_proxy.cuts >= 1
    replica.refresh_from_db()
    assert replica.status == ReplicaStatus.PENDING and replica.sha256_measured == ""
    assert replica.next_attempt_at > timezone.now() and replica.last_error
    eu = region_servers["eu"]
    assert version.key not in eu.keys("replicas")
    assert eu.keys("replicas", "acme/replication-staging/") == []
    # The cut upload could not be aborted while the target was unreachable...

    eu_proxy.heal()
    _due_now(replica)
    assert replica_copy(replica_id=replica.pk) == "verified"
    assert eu.read("replicas", version.key) == CSV
    # ...the next attempt aborted it before starting its own.
    assert eu.client.list_multipart_uploads(Bucket="replicas").get("Uploads", []) == []
    assert eu.keys("replicas", "acme/replication-staging/") == []
    assert [r.outcome for r in CopyRun.objects.filter(replica=replica).order_by("id")] == [
        "retry",
        "verified",
    ]


def test_a_flipped_byte_in_a_verified_replica_is_found_by_the_scrub_and_copied_again(
    dataset, publish, gold_rule, regions, region_servers, deliver, copy_due
):
    version = publish(dataset, CSV).version
    deliver()
    copy_due()
    eu = region_servers["eu"]
    flipped = bytearray(CSV)
    flipped[1000] ^= 0x01
    eu.client.put_object(Bucket="replicas", Key=version.key, Body=bytes(flipped))
    Replica.objects.update(scrubbed_at=timezone.now() - timedelta(days=30))

    assert replicas_scrub() == {"ok": 1, "corrupt": 1}
    replica = _eu(version)
    assert replica.status == ReplicaStatus.FAILED and "scrub" in replica.last_error
    failed = DomainEvent.objects.get(topic="replica.failed")
    assert failed.payload["region"] == "eu-west-1" and failed.payload["scrub"] is True
    manifest = region_manifest_latest(
        region=regions["eu-west-1"], organization=dataset.organization
    )
    assert "gold/txn_daily" not in manifest.body["datasets"]

    assert copy_due() == {replica.pk: "verified"}
    assert eu.read("replicas", version.key) == CSV
    manifest = region_manifest_latest(
        region=regions["eu-west-1"], organization=dataset.organization
    )
    assert manifest.body["datasets"]["gold/txn_daily"]["sha256"] == version.sha256


def test_a_region_down_for_long_backs_off_reports_once_and_catches_up_without_delaying_another(
    dataset, publish, gold_rule, eu_proxy, deliver, copy_due, settings
):
    settings.REPLICATION_MAX_ATTEMPTS = 2
    version = publish(dataset, CSV).version
    deliver()
    eu_proxy.cut_after = 0  # EU refuses every byte

    outcomes = copy_due()
    by_region = {Replica.objects.get(pk=pk).region.code: o for pk, o in outcomes.items()}
    assert by_region == {"ap-southeast-1": "verified", "eu-west-1": "retry"}

    replica = _eu(version)
    waits = []
    for _ in range(2):
        _due_now(replica)
        assert replica_copy(replica_id=replica.pk) == "retry"
        replica.refresh_from_db()
        waits.append(replica.next_attempt_at - timezone.now())
    assert replica.status == ReplicaStatus.FAILED  # reported...
    assert replica.next_attempt_at is not None  # ...and still retried
    assert DomainEvent.objects.filter(topic="replica.failed").count() == 1
    assert not DomainEvent.objects.filter(topic="version.replicated").exists()
    assert waits[-1] > timedelta(seconds=1)

    eu_proxy.heal()
    _due_now(replica)
    assert replica_copy(replica_id=replica.pk) == "verified"
    assert DomainEvent.objects.filter(topic="version.replicated").count() == 1


def test_a_copy_whose_lease_was_taken_over_changes_nothing(dataset, publish, gold_rule, deliver):
    from replication.services import replica_claim

    version = publish(dataset, CSV).version
    deliver()
    replica = _eu(version)
    first = replica_claim(replica_id=replica.pk)
    assert first is not None
    assert replica_claim(replica_id=replica.pk) is None  # held under a live lease
    Replica.objects.filter(pk=replica.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    second = replica_claim(replica_id=replica.pk)
    assert second is not None and second[1] != first[1]

    from replication.services.copies import _retry

    _retry(first[0], first[1], None, "late news from a stalled worker")
    replica.refresh_from_db()
    assert replica.status == ReplicaStatus.COPYING and replica.claim == second[1]
    assert replica.last_error == ""
