"""Keeping the targets honest and tidy: the scrub and retention.

- **Scrub**: a verified replica is hashed again on its target every
  `REPLICATION_SCRUB_DAYS`. Bytes that changed (or vanished) make it failed at once
  (`replica.failed`), drop it from the region's manifest, and queue a fresh copy.
- **Retention**: daily, replicas in target regions of versions that are no longer
  current and older than their rule's retention are deleted, never the current
  version, never one a region's manifest lists, never anything in the primary. Each
  deletion is audited and the replica marked `expired`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog.audit import Actor, audit_record
from catalog.exceptions import NotFound
from catalog.storage import sha256_of
from replication.engine import region_store
from replication.models import Replica, ReplicaStatus
from replication.services.copies import _record, replicas_dispatch
from replication.services.manifests import region_manifest_generate, region_manifest_write
from replication.services.regions import region_primary

logger = logging.getLogger(__name__)

_WORKER = Actor.system(via="worker")


def replica_scrub(*, replica_id: int) -> str:
    """Hashes one verified replica on its target; returns "ok", "corrupt" or "skipped"."""
    replica = (
        Replica.objects.select_related("version__dataset__organization", "region")
        .filter(pk=replica_id, status=ReplicaStatus.VERIFIED)
        .first()
    )
    if replica is None:
        return "skipped"
    try:
        measured = sha256_of(region_store(replica.region), replica.key)
    except NotFound:
        measured = ""
    now = timezone.now()
    if measured == replica.version.sha256:
        Replica.objects.filter(pk=replica.pk, status=ReplicaStatus.VERIFIED).update(scrubbed_at=now)
        return "ok"
    error = (
        f"The scrub found other bytes at {replica.key} in {replica.region.code} "
        f"(SHA-256 {measured[:12] or 'none: the object is gone'}); copying it again."
    )
    with transaction.atomic():
        if not Replica.objects.filter(pk=replica.pk, status=ReplicaStatus.VERIFIED).update(
            status=ReplicaStatus.FAILED,
            last_error=error,
            failed_at=now,
            failure_recorded_at=now,
            scrubbed_at=now,
            sha256_measured="",
            attempts=0,
            next_attempt_at=now,
            queued_at=now,
            late_recorded_at=None,
        ):
            return "skipped"
        _record(replica, "replica.failed", error=error, retrying=True, scrub=True)
        manifest = region_manifest_generate(
            region=replica.region, organization=replica.version.dataset.organization
        )
        replicas_dispatch([replica.pk])
    _write_quietly(manifest.pk)
    return "corrupt"


def replicas_scrub(*, limit: int = 200) -> dict[str, int]:
    """Scrubs the verified replicas not hashed for `REPLICATION_SCRUB_DAYS`."""
    cutoff = timezone.now() - timedelta(days=settings.REPLICATION_SCRUB_DAYS)
    ids = list(
        Replica.objects.filter(status=ReplicaStatus.VERIFIED)
        .filter(Q(scrubbed_at__isnull=True) | Q(scrubbed_at__lt=cutoff))
        .order_by("scrubbed_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    outcomes: dict[str, int] = {}
    for replica_id in ids:
        outcome = replica_scrub(replica_id=replica_id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _write_quietly(manifest_id: int) -> None:
    try:
        region_manifest_write(manifest_id=manifest_id)
    except Exception:
        logger.warning("Region manifest %s not written yet; the tick retries.", manifest_id)


def replicas_expire(*, now=None) -> int:
    """Deletes expired copies from target regions; returns how many."""
    now = now or timezone.now()
    primary = region_primary()
    candidates = (
        Replica.objects.filter(status=ReplicaStatus.VERIFIED, version__is_current=False)
        .exclude(region=primary)
        .select_related("version__dataset__organization", "region", "rule")
    )
    expired = 0
    for replica in candidates:
        days = (
            replica.rule.retention_days
            if replica.rule
            else settings.REPLICATION_DEFAULT_RETENTION_DAYS
        )
        if replica.version.published_at > now - timedelta(days=days):
            continue
        organization = replica.version.dataset.organization
        with transaction.atomic():
            # Lock the row and look again: still verified, still not current, and not
            # what the region's manifest would list (it lists the newest verified
            # version while the current one is on its way).
            locked = (
                Replica.objects.select_for_update()
                .filter(pk=replica.pk, status=ReplicaStatus.VERIFIED, version__is_current=False)
                .first()
            )
            if locked is None:
                continue
            listed = region_manifest_generate(region=replica.region, organization=organization)
            entry = listed.body["datasets"].get(replica.version.dataset.path)
            if entry and entry["sha256"] == replica.version.sha256:
                continue
            Replica.objects.filter(pk=replica.pk).update(
                status=ReplicaStatus.EXPIRED, expired_at=now
            )
            audit_record(
                actor=_WORKER,
                action="replica.expire",
                obj=replica.version,
                organization=organization,
                details={
                    "region": replica.region.code,
                    "key": replica.key,
                    "retention_days": days,
                    "replica_id": replica.pk,
                },
            )
        # Delete after commit: a failure here leaves an orphan object, never a
        # replica marked verified whose bytes are gone.
        try:
            region_store(replica.region).delete(replica.key)
        except Exception:
            logger.warning("Could not delete %s from %s yet.", replica.key, replica.region.code)
        expired += 1
    return expired
