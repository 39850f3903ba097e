"""Whole flows through real Celery workers: a publish reaches both regions through the
outbox; a worker killed mid-copy is replaced and the copy finishes once; with Redis
down at publish time the intent waits in the outbox and the copies happen once it is
back."""

from __future__ import annotations

import hashlib
import json

import pytest

from catalog.models import DomainEvent, EventDelivery
from catalog.queue import send_task
from replication.models import CopyRun, Replica, ReplicaStatus
from replication.services import replicas_dispatch, replicas_due
from tests.conftest import wait_for
from tests.replication.conftest import CSV
from tests.versioning.test_faults import private_redis  # noqa: F401 - a Redis to stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

WORKER_ENV = {
    "REPLICATION_LEASE_SECONDS": "4",
    "REPLICATION_PART_BYTES": str(64 * 1024),
    "REPLICATION_THROTTLE_CHUNK_BYTES": str(32 * 1024),
}


def _verified(version, count: int = 2) -> bool:
    return Replica.objects.filter(version=version, status=ReplicaStatus.VERIFIED).count() == count


def test_a_published_version_is_verified_in_both_regions_by_a_real_worker(
    dataset, publish, gold_rule, regions, region_servers, start_worker
):
    start_worker(env=WORKER_ENV)
    version = publish(dataset, CSV).version

    wait_for(lambda: _verified(version), timeout=60, message="both replicas verified")
    eu = region_servers["eu"]
    assert hashlib.sha256(eu.read("replicas", version.key)).hexdigest() == version.sha256
    latest = "acme/v1/manifests/latest.json"
    wait_for(lambda: latest in eu.keys("replicas", "acme/v1/manifests/"), message="latest.json")
    manifest = json.loads(eu.read("replicas", latest))
    assert manifest["datasets"]["gold/txn_daily"]["sha256"] == version.sha256
    assert DomainEvent.objects.filter(topic="version.replicated").count() == 1


def test_a_worker_killed_mid_copy_is_replaced_and_the_copy_finishes_once(
    dataset, publish, gold_rule, regions, region_servers, start_worker
):
    gold_rule.regions.set([regions["eu-west-1"]])
    type(gold_rule).objects.filter(pk=gold_rule.pk).update(bandwidth_mbps=1)  # ~3 s a copy
    worker = start_worker(env=WORKER_ENV)
    version = publish(dataset, CSV).version
    wait_for(
        lambda: Replica.objects.filter(
            version=version, status=ReplicaStatus.COPYING, bytes_copied__gt=0
        ).exists(),
        timeout=60,
        interval=0.05,
        message="the copy to be under way",
    )
    worker.kill()
    replica = Replica.objects.get(version=version)
    assert replica.status == ReplicaStatus.COPYING  # killed half-way: nobody finished it
    assert version.key not in region_servers["eu"].keys("replicas")

    start_worker(env=WORKER_ENV)

    def tick_until_verified():
        replicas_dispatch(replicas_due())  # what the periodic tick does
        return _verified(version, count=1)

    wait_for(tick_until_verified, timeout=90, interval=1, message="the copy taken over")
    replica.refresh_from_db()
    assert replica.attempts == 2
    outcomes = list(
        CopyRun.objects.filter(replica=replica).order_by("id").values_list("outcome", flat=True)
    )
    assert outcomes == ["lost", "verified"]
    assert DomainEvent.objects.filter(topic="replica.verified").count() == 1
    assert region_servers["eu"].read("replicas", version.key) == CSV


def test_with_redis_down_at_publish_the_copies_happen_once_it_is_back(
    dataset,
    publish,
    gold_rule,
    regions,
    start_worker,
    private_redis,  # noqa: F811
):
    private_redis.stop()
    version = publish(dataset, CSV).version  # the after-commit nudge cannot be sent
    delivery = EventDelivery.objects.get(
        event__topic="version.published", handler__startswith="replication."
    )
    assert delivery.delivered_at is None
    assert not Replica.objects.exists()

    private_redis.start()
    start_worker(env={**WORKER_ENV, "REDIS_URL": private_redis.url})
    send_task("catalog.sweep_events")  # what beat sends every 30 s

    wait_for(lambda: _verified(version), timeout=90, message="the copies after the outage")
    assert Replica.objects.filter(version=version).count() == 2
