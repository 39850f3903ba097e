"""Rollback: another version becomes current in one short transaction; nothing is lost."""

from __future__ import annotations

import pytest

from catalog.audit import Actor
from catalog.exceptions import Forbidden, InvalidInput, NotFound
from catalog.models import AuditEntry, DomainEvent
from catalog.storage import get_object_store, sha256_of
from tests.versioning.conftest import base_csv
from versioning.manifest import manifest_latest
from versioning.models import DatasetRollback, DatasetVersion, Manifest
from versioning.services import (
    dataset_rollback,
    version_archive,
    version_deprecate,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def stewarded(steward):
    return Actor(user=steward, via="admin")


@pytest.fixture
def two(dataset, publish_with):
    first = publish_with(dataset, base_csv()).version
    second = publish_with(dataset, base_csv(store_id=None)).version
    assert second.version == "2.0.0"
    return first, second


def listed(dataset):
    return manifest_latest(organization=dataset.organization).body["datasets"][dataset.path]


def test_a_rollback_makes_the_manifest_list_the_previous_sha256_again(
    dataset, two, stewarded, bucket_keys
):
    first, second = two
    before = manifest_latest(organization=dataset.organization)
    assert listed(dataset)["sha256"] == second.sha256

    rollback = dataset_rollback(
        dataset=dataset, to="1.0.0", reason="2.0.0 dropped store_id by mistake", actor=stewarded
    )

    assert listed(dataset)["sha256"] == first.sha256
    assert listed(dataset)["schema_version"] == "1.0.0"
    assert DatasetVersion.objects.get(dataset=dataset, is_current=True) == first
    assert (rollback.from_version, rollback.to_version) == (second, first)
    assert rollback.reason == "2.0.0 dropped store_id by mistake"
    assert rollback.actor.username == "stella"
    assert rollback.backup_manifest_key == before.key
    assert Manifest.objects.filter(key=before.key).exists()  # the backup stays
    assert rollback.manifest == manifest_latest(organization=dataset.organization)
    # No bytes are deleted: both versions' objects are still there, intact.
    store = get_object_store()
    for version in two:
        assert sha256_of(store, version.key) == version.sha256
    event = DomainEvent.objects.get(topic="version.rolled_back")
    assert (event.payload["from_version"], event.payload["to_version"]) == ("2.0.0", "1.0.0")
    assert AuditEntry.objects.filter(action="version.rollback").exists()


def test_rolling_forward_again_is_a_rollback_too(dataset, two, stewarded):
    first, second = two
    dataset_rollback(dataset=dataset, to=first, reason="bad", actor=stewarded)
    dataset_rollback(dataset=dataset, to=second, reason="it was fine", actor=stewarded)
    assert listed(dataset)["sha256"] == second.sha256
    assert DatasetRollback.objects.filter(dataset=dataset).count() == 2


def test_a_rollback_to_an_unknown_version_is_refused(dataset, two, stewarded):
    with pytest.raises(NotFound, match="no version '9.9.9'"):
        dataset_rollback(dataset=dataset, to="9.9.9", reason="x", actor=stewarded)


def test_a_rollback_to_the_current_version_is_refused(dataset, two, stewarded):
    with pytest.raises(InvalidInput, match="already the current version"):
        dataset_rollback(dataset=dataset, to="2.0.0", reason="x", actor=stewarded)


def test_a_rollback_to_an_archived_or_deprecated_version_asks_for_a_restore(
    dataset, two, stewarded
):
    from datetime import timedelta

    from django.utils import timezone

    first, _ = two
    version_deprecate(
        version=first,
        message="Old.",
        sunset=timezone.localdate() + timedelta(days=1),
        actor=stewarded,
    )
    with pytest.raises(InvalidInput, match="deprecated: restore it first"):
        dataset_rollback(dataset=dataset, to=first, reason="x", actor=stewarded)
    version_archive(version=first, actor=stewarded)
    with pytest.raises(InvalidInput, match="archived: restore it first"):
        dataset_rollback(dataset=dataset, to=first, reason="x", actor=stewarded)
    assert not DatasetRollback.objects.exists()


def test_a_rollback_to_a_draft_asks_for_a_promotion(dataset, two, publish_with, stewarded):
    draft = publish_with(dataset, base_csv(store_id=None, units=[9, 9, 9]), draft=True).version
    with pytest.raises(InvalidInput, match="promote it instead"):
        dataset_rollback(dataset=dataset, to=draft, reason="x", actor=stewarded)


def test_a_rollback_needs_a_reason_and_a_version_of_the_same_dataset(
    dataset, two, acme, system, publish_with, stewarded
):
    from catalog.services import dataset_create

    with pytest.raises(InvalidInput, match="reason"):
        dataset_rollback(dataset=dataset, to="1.0.0", reason="  ", actor=stewarded)
    other = dataset_create(organization=acme, layer="gold", name="other", actor=system)
    foreign = publish_with(other, base_csv()).version
    with pytest.raises(InvalidInput, match="not a version of gold/txn_daily"):
        dataset_rollback(dataset=dataset, to=foreign, reason="x", actor=stewarded)


def test_only_stewards_of_the_organisation_roll_back(dataset, two, viewer, outsider):
    for user in (viewer, outsider):
        with pytest.raises(Forbidden):
            dataset_rollback(
                dataset=dataset, to="1.0.0", reason="x", actor=Actor(user=user, via="api")
            )
    assert listed(dataset)["schema_version"] == "2.0.0"
