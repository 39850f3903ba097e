"""Delivered outbox rows and superseded manifests are pruned after their retention;
the audit log, pending or failed deliveries, and each organisation's latest manifest
stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from catalog import events
from catalog.models import AuditEntry, DomainEvent, EventDelivery
from catalog.tasks import prune_outbox
from versioning.manifest import manifest_generate, manifest_latest
from versioning.models import Manifest
from versioning.tasks import prune_manifests

pytestmark = pytest.mark.django_db


def age(queryset, days: int, field: str) -> None:
    queryset.update(**{field: timezone.now() - timedelta(days=days)})


def probe_event(tmp_path, acme):
    with transaction.atomic():
        return events.event_record(
            topic="probe.ping", payload={"log": str(tmp_path / "log")}, organization=acme
        )


def test_delivered_events_past_retention_are_pruned_and_the_rest_stay(acme, tmp_path, settings):
    settings.OUTBOX_RETENTION_DAYS = 30
    old_delivered = probe_event(tmp_path, acme)
    old_pending = probe_event(tmp_path, acme)
    old_failed = probe_event(tmp_path, acme)
    recent_delivered = probe_event(tmp_path, acme)
    EventDelivery.objects.filter(event__in=[old_delivered, recent_delivered]).update(
        delivered_at=timezone.now()
    )
    EventDelivery.objects.filter(event=old_failed).update(failed_at=timezone.now())
    age(DomainEvent.objects.exclude(pk=recent_delivered.pk), 31, "created_at")
    audits = AuditEntry.objects.count()

    assert prune_outbox() == 1
    assert set(DomainEvent.objects.values_list("pk", flat=True)) == {
        old_pending.pk,
        old_failed.pk,
        recent_delivered.pk,
    }
    assert not EventDelivery.objects.filter(event_id=old_delivered.pk).exists()
    assert AuditEntry.objects.count() == audits


def test_superseded_manifests_past_retention_are_pruned_and_each_latest_stays(
    acme, globex, settings
):
    settings.MANIFEST_RETENTION_DAYS = 30
    with transaction.atomic():
        for _ in range(3):
            manifest_generate(organization=acme)
        lone = manifest_generate(organization=globex)
    Manifest.objects.update(written_at=timezone.now())
    age(Manifest.objects.all(), 40, "generated_at")
    newest = manifest_latest(organization=acme)
    unwritten = Manifest.objects.filter(organization=acme).exclude(pk=newest.pk).first()
    Manifest.objects.filter(pk=unwritten.pk).update(written_at=None)

    assert prune_manifests() == 1
    assert set(Manifest.objects.values_list("pk", flat=True)) == {newest.pk, unwritten.pk, lone.pk}


def test_recent_superseded_manifests_are_kept(acme, settings):
    settings.MANIFEST_RETENTION_DAYS = 30
    with transaction.atomic():
        manifest_generate(organization=acme)
        manifest_generate(organization=acme)
    Manifest.objects.update(written_at=timezone.now())
    assert prune_manifests() == 0
    assert Manifest.objects.count() == 2
