"""Replication's Celery tasks, on the `replication` queue (named `replication.*`).
Thin: ids in, one service call each."""

from __future__ import annotations

import logging

from celery import shared_task

from replication import services

logger = logging.getLogger(__name__)


@shared_task(name="replication.copy", bind=True)
def copy(self, replica_id: int) -> str:
    return services.replica_copy(replica_id=replica_id, worker=self.request.hostname or "")


@shared_task(name="replication.tick")
def tick() -> dict:
    """Every few seconds (beat): scheduled rules that are due, copies that are due again
    (backoff over, lease lapsed, task lost), late copies, unwritten region manifests."""
    ran = services.rules_run_due()
    due = services.replicas_due()
    services.replicas_dispatch(due)
    late = services.replicas_late_record()
    for manifest_id in services.region_manifests_unwritten():
        try:
            services.region_manifest_write(manifest_id=manifest_id)
        except Exception:  # that region is unreachable: the next tick tries again
            logger.warning("Region manifest %s not written yet.", manifest_id)
    return {"rules": ran, "dispatched": len(due), "late": late}


@shared_task(name="replication.scrub")
def scrub() -> dict:
    return services.replicas_scrub()


@shared_task(name="replication.retention")
def retention() -> int:
    return services.replicas_expire()
