"""Copies through the services against real S3 servers: triggers, verification,
region manifests, events, idempotence, the server-side path, rollback, schedules."""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta

from django.utils import timezone

from catalog.models import DomainEvent
from replication.models import CopyRun, Policy, Region, Replica, ReplicaStatus
from replication.services import (
    region_manifest_latest,
    replica_copy,
    replication_request,
    rule_create,
    rules_run_due,
)
from replication.services.planning import version_replicate_by_rules
from tests.replication.conftest import CSV
from versioning.manifest import manifest_checksum
from versioning.models import DatasetVersion
from versioning.services import dataset_rollback


def _topics(topic: str) -> list[dict]:
    return [e.payload for e in DomainEvent.objects.filter(topic=topic).order_by("id")]


def test_a_published_gold_version_is_verified_in_both_regions_with_identical_bytes(
    dataset, publish, gold_rule, regions, region_servers, deliver, copy_due
):
    job = publish(dataset, CSV)
    version = job.version
    deliver()

    replicas = Replica.objects.filter(version=version)
    assert {r.region.code for r in replicas} == {"ap-southeast-1", "eu-west-1"}
    assert set(copy_due().values()) == {"verified"}

    for replica in Replica.objects.filter(version=version).select_related("region"):
        assert replica.status == ReplicaStatus.VERIFIED
        assert replica.sha256_measured == version.sha256 == hashlib.sha256(CSV).hexdigest()
        assert replica.method == "stream"
        server = region_servers["ap" if replica.region.code.startswith("ap") else "eu"]
        assert server.read("replicas", version.key) == CSV
        # Only the final key and the region's manifest: nothing left in staging.
        assert server.keys("replicas", "acme/replication-staging/") == []
    runs = CopyRun.objects.filter(replica__version=version)
    assert {r.outcome for r in runs} == {"verified"}
    assert all(r.bytes_transferred == len(CSV) and r.throughput_bps > 0 for r in runs)
    assert {p["region"] for p in _topics("replica.verified")} == {"ap-southeast-1", "eu-west-1"}
    replicated = _topics("version.replicated")
    assert len(replicated) == 1
    assert replicated[0]["regions"] == ["ap-southeast-1", "eu-west-1"]
    assert replicated[0]["dataset"] == "gold/txn_daily"
    assert replicated[0]["organization"] == "acme"


def test_each_region_manifest_lists_only_what_that_region_verified(
    dataset, publish, gold_rule, regions, region_servers, deliver
):
    version = publish(dataset, CSV).version
    deliver()
    eu = Replica.objects.get(version=version, region=regions["eu-west-1"])
    assert replica_copy(replica_id=eu.pk) == "verified"

    eu_manifest = region_manifest_latest(
        region=regions["eu-west-1"], organization=dataset.organization
    )
    entry = eu_manifest.body["datasets"]["gold/txn_daily"]
    assert entry["sha256"] == version.sha256 and entry["latest_csv"] == f"/{version.key}"
    assert eu_manifest.body["integrity"]["manifest_sha256"] == manifest_checksum(eu_manifest.body)
    assert (
        region_manifest_latest(region=regions["ap-southeast-1"], organization=dataset.organization)
        is None
    )
    import json

    stored = json.loads(region_servers["eu"].read("replicas", "acme/v1/manifests/latest.json"))
    assert stored == eu_manifest.body


def test_a_redelivered_copy_of_a_verified_replica_copies_nothing(
    dataset, publish, gold_rule, deliver, copy_due
):
    publish(dataset, CSV)
    deliver()
    copy_due()
    replica = Replica.objects.first()

    assert replica_copy(replica_id=replica.pk) == "not due"
    deliver()  # the same events again change nothing either
    assert CopyRun.objects.filter(replica=replica).count() == 1
    assert Replica.objects.count() == 2


def test_a_bucket_on_the_primary_endpoint_is_filled_by_a_server_side_copy(
    dataset, publish, regions, system, acme, s3_server, deliver, copy_due
):
    from replication.services import region_save

    nearby = region_save(
        region=Region(
            code="us-east-2",
            name="Same endpoint",
            endpoint_url=s3_server.meta.endpoint_url,
            bucket="datasets-test-copies",
            access_key_env="REGION_KEY_ID",
            secret_key_env="REGION_SECRET",
        ),
        actor=system,
    )
    rule_create(organization=acme, regions=[nearby], actor=system, pattern="acme/*/*")
    version = publish(dataset, CSV).version
    deliver()
    assert set(copy_due().values()) == {"verified"}

    replica = Replica.objects.get(version=version, region=nearby)
    assert replica.method == "server-side"
    assert replica.runs.get().bytes_transferred == 0  # nothing went through the worker
    body = s3_server.get_object(Bucket="datasets-test-copies", Key=version.key)["Body"].read()
    assert body == CSV


def test_a_rollback_puts_the_version_made_current_in_every_target(
    dataset, publish, regions, gold_rule, system, deliver, copy_due
):
    first = publish(dataset, CSV).version
    # Only after the first version: the rule came later, so 1.0.0 has no replicas yet.
    Replica.objects.all().delete()
    gold_rule.enabled = False
    gold_rule.save()
    second = publish(dataset, CSV + b"2024-09-01,ST0001,1.00\n").version
    deliver()
    assert not Replica.objects.exists()
    gold_rule.enabled = True
    gold_rule.save()

    dataset_rollback(dataset=dataset, to=first.version, reason="bad rows", actor=system)
    deliver()
    copy_due()

    assert set(Replica.objects.filter(version=first).values_list("status", flat=True)) == {
        "verified"
    }
    assert not Replica.objects.filter(version=second).exists()


def test_a_scheduled_rule_runs_once_when_due_and_moves_to_its_next_time(
    dataset, publish, regions, system, acme
):
    publish(dataset, CSV)
    rule = rule_create(
        organization=acme,
        regions=[regions["ap-southeast-1"]],
        actor=system,
        pattern="acme/gold/*",
        policy="scheduled",
        cron="0 2 * * *",
        timezone="Asia/Manila",
    )
    # 02:00 in Manila is 18:00 UTC.
    assert rule.next_run_at.astimezone(UTC).hour == 18
    assert rules_run_due() == 0 and not Replica.objects.exists()

    type(rule).objects.filter(pk=rule.pk).update(next_run_at=timezone.now() - timedelta(minutes=1))
    assert rules_run_due() == 1
    assert rules_run_due() == 0  # claimed: the next run is tomorrow
    rule.refresh_from_db()
    assert rule.next_run_at > timezone.now() and rule.last_run_at is not None
    assert Replica.objects.get().region.code == "ap-southeast-1"


def test_a_steward_replicates_a_dataset_on_demand_to_named_regions(
    dataset, publish, regions, steward, actor_of, copy_due
):
    version = publish(dataset, CSV).version
    queued = replication_request(dataset=dataset, regions=["eu-west-1"], actor=actor_of(steward))

    assert [r.region.code for r in queued] == ["eu-west-1"]
    assert copy_due() == {queued[0].pk: "verified"}
    assert DatasetVersion.objects.get(pk=version.pk).replicas.get().status == "verified"


def test_a_version_no_rule_matches_is_planned_in_two_queries_or_one_given_its_organisation(
    dataset, publish, regions, gold_rule, django_assert_num_queries
):
    gold_rule.enabled = False
    gold_rule.save()
    version = publish(dataset, CSV).version
    # The version and the rules: no transaction, no look for replicas to plan.
    with django_assert_num_queries(2):
        assert version_replicate_by_rules(version_id=version.pk, policies=(Policy.IMMEDIATE,)) == []
    # Given the organisation (as the handlers are, from the event): is there a rule? No:
    # the version is not read.
    with django_assert_num_queries(1):
        planned = version_replicate_by_rules(
            version_id=version.pk,
            policies=(Policy.IMMEDIATE,),
            organization_id=dataset.organization_id,
        )
    assert planned == []
    assert not Replica.objects.exists()
