"""Usage tasks, on the `usage` queue (by their `usage.` prefix). Thin: one service each.
Every one is safe to run twice or concurrently: the services are idempotent."""

from __future__ import annotations

from celery import shared_task

from usage.services import alerts, ingest, maintenance, rollups, segments


@shared_task(name="usage.ingest")
def ingest_events() -> int:
    return ingest.events_ingest().written


@shared_task(name="usage.rollup")
def rollup_due_days() -> int:
    return len(rollups.rollups_run_due())


@shared_task(name="usage.maintain")
def maintain() -> dict:
    """Hourly: partitions ahead, retention, and the daily figures for finished days
    (segments, thresholds, anomalies), each done once per day."""
    made = maintenance.partitions_maintain()
    dropped = maintenance.retention_apply()
    done = maintenance.daily_run(
        steps=[segments.segments_compute, alerts.thresholds_check, alerts.anomalies_detect]
    )
    return {"partitions_made": made, "dropped": dropped, "daily": done}
