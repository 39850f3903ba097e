"""Manifests of one organisation are built one after the other, each after every earlier
change committed, so the newest never misses a committed version (two publishes to two
of its datasets run at once, each under its own dataset's lock)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from tests.conftest import wait_for
from tests.versioning.conftest import CSV
from versioning.manifest import manifest_generate, manifest_latest
from versioning.models import DatasetVersion

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_manifest_built_while_another_commits_waits_for_it_and_lists_its_change(
    acme, dataset, system, publish
):
    from catalog.services import dataset_create

    other = dataset_create(organization=acme, layer="gold", name="other", actor=system)
    assert publish(dataset, CSV).status == "succeeded"
    assert publish(other, CSV).status == "succeeded"
    locked, release = threading.Event(), threading.Event()
    built: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                # A change to a current version, then its manifest; the commit waits.
                DatasetVersion.objects.filter(dataset=dataset, is_current=True).update(
                    row_count=999
                )
                built["first"] = manifest_generate(organization=acme)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def second() -> None:
        try:
            with transaction.atomic():
                built["second"] = manifest_generate(organization=acme)
        finally:
            connection.close()

    a = threading.Thread(target=first)
    a.start()
    assert locked.wait(30)
    b = threading.Thread(target=second)
    b.start()
    # The second build waits on the organisation's row lock until the first commits.
    wait_for(_blocked_on_a_lock, timeout=30, message="the second build to wait on the lock")
    assert "second" not in built
    release.set()
    a.join(30)
    b.join(30)
    first_manifest, second_manifest = built["first"], built["second"]
    assert second_manifest.generated_at > first_manifest.generated_at
    assert second_manifest.pk > first_manifest.pk
    # Built after the first committed, the second lists its change.
    assert second_manifest.body["datasets"]["gold/txn_daily"]["row_count"] == 999
    assert manifest_latest(organization=acme).pk == second_manifest.pk


def _blocked_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0
