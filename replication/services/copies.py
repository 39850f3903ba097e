"""Copying one replica: claim it, run the copy engine, record the outcome.

A replica is claimed by a conditional update that sets a fresh `claim` and a lease;
every later change by that worker (progress, the outcome) is filtered on that claim, so
a worker that lost its lease (it stalled, or was killed and its replica taken over)
changes nothing. Redelivering a task is harmless: a verified replica is never claimed.

A failure of infrastructure (a region unreachable, a cut connection, bytes that landed
wrong) is temporary: the replica waits with exponential backoff and jitter
(`next_attempt_at`), and the periodic tick sends it again when due. After
`REPLICATION_MAX_ATTEMPTS` it is reported failed (`replica.failed`, once) and still
retried at the longest backoff, so a region that was down for hours catches up when it
returns. Only a missing source object fails a replica for good. Each region's replicas
are separate rows and tasks, so one region's failures never hold up another's copies.
"""

from __future__ import annotations

import logging
import random
import socket
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from catalog import events
from catalog.exceptions import NotFound
from catalog.queue import send_task
from replication.engine import LeaseLost, copy_object, region_store
from replication.models import CopyOutcome, CopyRun, Replica, ReplicaStatus
from replication.services.manifests import region_manifest_generate, region_manifest_write
from replication.services.regions import region_primary
from replication.throttle import link_name

logger = logging.getLogger(__name__)

UNFINISHED = (ReplicaStatus.PENDING, ReplicaStatus.COPYING, ReplicaStatus.FAILED)


def replica_payload(replica: Replica, **extra) -> dict:
    version = replica.version
    return {
        "replica_id": replica.pk,
        "dataset_id": version.dataset_id,
        "dataset": version.dataset.path,
        "organization": version.dataset.organization.slug,
        "version_id": version.pk,
        "version": version.version,
        "region": replica.region.code,
        "sha256": version.sha256,
        "key": replica.key,
        **extra,
    }


def _record(replica: Replica, topic: str, **extra) -> None:
    events.event_record(
        topic=topic,
        payload=replica_payload(replica, **extra),
        organization=replica.version.dataset.organization,
    )


def replicas_dispatch(replica_ids: list[int]) -> None:
    """Sends a copy task per replica after commit (a best-effort nudge: the tick sends
    again whatever is still due)."""
    if not replica_ids:
        return
    now = timezone.now()
    Replica.objects.filter(pk__in=replica_ids).update(dispatched_at=now)

    def send() -> None:
        for replica_id in replica_ids:
            send_task("replication.copy", replica_id)

    transaction.on_commit(send)


def _backoff(attempts: int) -> timedelta:
    ceiling = settings.REPLICATION_RETRY_MAX_SECONDS
    seconds = min(ceiling, 2 ** min(attempts, 20)) * (0.5 + random.random() / 2)
    return timedelta(seconds=max(1.0, seconds))


def replica_claim(*, replica_id: int) -> tuple[Replica, uuid.UUID] | None:
    """Takes a due replica (pending or failed and due, or copying under a lapsed lease)."""
    now = timezone.now()
    claim = uuid.uuid4()
    taken = (
        Replica.objects.filter(pk=replica_id)
        .filter(
            Q(status__in=[ReplicaStatus.PENDING, ReplicaStatus.FAILED], next_attempt_at__lte=now)
            | Q(status=ReplicaStatus.COPYING, lease_until__lt=now)
        )
        .update(
            status=ReplicaStatus.COPYING,
            claim=claim,
            lease_until=now + timedelta(seconds=settings.REPLICATION_LEASE_SECONDS),
            attempts=F("attempts") + 1,
            started_at=now,
            bytes_copied=0,
        )
    )
    if not taken:
        return None
    # A run left open by a worker that died is over: its lease ran out.
    CopyRun.objects.filter(replica_id=replica_id, finished_at__isnull=True).update(
        finished_at=now, outcome=CopyOutcome.LOST, error="The worker stopped reporting."
    )
    replica = Replica.objects.select_related(
        "version__dataset__organization", "region", "rule"
    ).get(pk=replica_id)
    return replica, claim


def _fenced(replica: Replica, claim: uuid.UUID):
    return Replica.objects.filter(pk=replica.pk, claim=claim, status=ReplicaStatus.COPYING)


def replica_copy(*, replica_id: int, worker: str = "") -> str:
    """Copies one replica if it is due; returns what happened (for logs and tests)."""
    claimed = replica_claim(replica_id=replica_id)
    if claimed is None:
        return "not due"
    replica, claim = claimed
    primary = region_primary()
    if primary is None:
        _retry(replica, claim, None, "No primary region is configured.")
        return "retry"
    now = timezone.now()
    run = CopyRun.objects.create(
        replica=replica,
        source_region=primary,
        target_region=replica.region,
        attempt=replica.attempts,
        method="",
        worker=worker or socket.gethostname(),
        started_at=now,
    )
    progress = {"bytes": 0}

    def heartbeat() -> bool:
        lease = timezone.now() + timedelta(seconds=settings.REPLICATION_LEASE_SECONDS)
        return bool(
            _fenced(replica, claim).update(lease_until=lease, bytes_copied=progress["bytes"])
        )

    def on_bytes(count: int) -> None:
        progress["bytes"] = count

    try:
        result = copy_object(
            source=region_store(primary),
            target=region_store(replica.region),
            key=replica.version.key,
            replica_id=replica.pk,
            attempt=replica.attempts,
            expected_sha256=replica.version.sha256,
            content_type=replica.version.content_type,
            link=link_name(primary.code, replica.region.code),
            mbps=replica.bandwidth_mbps,
            heartbeat=heartbeat,
            on_bytes=on_bytes,
        )
    except LeaseLost:
        _run_end(run, CopyOutcome.LOST, progress["bytes"], "Another worker took the replica over.")
        return "lost"
    except NotFound as exc:
        _fail_for_good(replica, claim, run, f"The primary has no object to copy: {exc.message}")
        return "failed"
    except Exception as exc:
        logger.warning("Copy of %s failed: %s", replica, exc)
        _retry(replica, claim, run, _message(exc), transferred=progress["bytes"])
        return "retry"
    return _verified(replica, claim, run, result)


def _message(exc: Exception) -> str:
    return (getattr(exc, "message", "") or str(exc) or exc.__class__.__name__)[:2000]


def _run_end(run: CopyRun | None, outcome: str, transferred: int, error: str = "") -> None:
    if run is None:
        return
    finished = timezone.now()
    seconds = max((finished - run.started_at).total_seconds(), 1e-6)
    CopyRun.objects.filter(pk=run.pk).update(
        finished_at=finished,
        outcome=outcome,
        bytes_transferred=transferred,
        duration_seconds=seconds,
        throughput_bps=transferred / seconds,
        error=error[:2000],
    )


def _verified(replica: Replica, claim: uuid.UUID, run: CopyRun, result) -> str:
    now = timezone.now()
    manifest = None
    with transaction.atomic():
        # Lock the version's replicas: of two copies verifying at once, the later sees
        # the other and records `version.replicated`, exactly once.
        siblings = list(
            Replica.objects.select_for_update()
            .filter(version_id=replica.version_id)
            .order_by("pk")
            .values_list("pk", "status")
        )
        updated = _fenced(replica, claim).update(
            status=ReplicaStatus.VERIFIED,
            sha256_measured=result.sha256,
            bytes_copied=replica.size_bytes,
            method=result.method,
            verified_at=now,
            scrubbed_at=now,
            lease_until=None,
            claim=None,
            next_attempt_at=None,
            last_error="",
        )
        if not updated:
            transaction.set_rollback(True)
            lost = True
        else:
            lost = False
            # The run ends with the replica it verified: nobody sees one without the other.
            _run_end(run, CopyOutcome.VERIFIED, result.bytes_transferred)
            CopyRun.objects.filter(pk=run.pk).update(method=result.method)
            _record(
                replica,
                "replica.verified",
                bytes=result.bytes_transferred,
                seconds=round(result.seconds, 3),
                method=result.method,
            )
            others = [s for pk, s in siblings if pk != replica.pk and s != ReplicaStatus.EXPIRED]
            if all(s == ReplicaStatus.VERIFIED for s in others):
                regions = list(
                    Replica.objects.filter(version_id=replica.version_id)
                    .exclude(status=ReplicaStatus.EXPIRED)
                    .values_list("region__code", flat=True)
                )
                events.event_record(
                    topic="version.replicated",
                    payload={**replica_payload(replica), "regions": sorted(regions)},
                    organization=replica.version.dataset.organization,
                )
            manifest = region_manifest_generate(
                region=replica.region, organization=replica.version.dataset.organization
            )
    if lost:
        _run_end(run, CopyOutcome.LOST, result.bytes_transferred, "Lease lost before commit.")
        return "lost"
    if manifest is not None and manifest.written_at is None:
        try:
            region_manifest_write(manifest_id=manifest.pk)
        except Exception:
            logger.warning("Region manifest %s not written yet; the tick retries.", manifest.pk)
    return "verified"


def _retry(
    replica: Replica, claim: uuid.UUID, run: CopyRun | None, error: str, *, transferred: int = 0
) -> None:
    now = timezone.now()
    give_notice = replica.attempts >= settings.REPLICATION_MAX_ATTEMPTS
    with transaction.atomic():
        updated = _fenced(replica, claim).update(
            status=ReplicaStatus.FAILED if give_notice else ReplicaStatus.PENDING,
            last_error=error,
            lease_until=None,
            claim=None,
            next_attempt_at=now + _backoff(replica.attempts),
            failed_at=now if give_notice else F("failed_at"),
        )
        if updated and give_notice and replica.failure_recorded_at is None:
            Replica.objects.filter(pk=replica.pk).update(failure_recorded_at=now)
            _record(
                replica,
                "replica.failed",
                error=error,
                attempts=replica.attempts,
                retrying=True,
            )
    _run_end(run, CopyOutcome.RETRY, transferred, error)


def _fail_for_good(replica: Replica, claim: uuid.UUID, run: CopyRun, error: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        updated = _fenced(replica, claim).update(
            status=ReplicaStatus.FAILED,
            last_error=error,
            lease_until=None,
            claim=None,
            next_attempt_at=None,
            failed_at=now,
            failure_recorded_at=now,
        )
        if updated:
            _record(
                replica, "replica.failed", error=error, attempts=replica.attempts, retrying=False
            )
    _run_end(run, CopyOutcome.FAILED, 0, error)


def replicas_due(*, limit: int = 500) -> list[int]:
    """Replicas to (re)send: due and not sent within a lease, or held by a lapsed lease."""
    now = timezone.now()
    resend = now - timedelta(seconds=settings.REPLICATION_LEASE_SECONDS)
    return list(
        Replica.objects.filter(
            Q(status__in=[ReplicaStatus.PENDING, ReplicaStatus.FAILED], next_attempt_at__lte=now)
            | Q(status=ReplicaStatus.COPYING, lease_until__lt=now)
        )
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=resend))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def replicas_late_record() -> int:
    """Records `replica.late` once for each copy unverified this long after queuing."""
    cutoff = timezone.now() - timedelta(minutes=settings.REPLICATION_LATE_MINUTES)
    late = Replica.objects.filter(
        status__in=UNFINISHED, queued_at__lt=cutoff, late_recorded_at__isnull=True
    ).select_related("version__dataset__organization", "region")
    count = 0
    for replica in late[:500]:
        with transaction.atomic():
            if Replica.objects.filter(pk=replica.pk, late_recorded_at__isnull=True).update(
                late_recorded_at=timezone.now()
            ):
                minutes = (timezone.now() - replica.queued_at).total_seconds() / 60
                _record(
                    replica,
                    "replica.late",
                    status=replica.status,
                    minutes=round(minutes, 1),
                    last_error=replica.last_error,
                )
                count += 1
    return count
