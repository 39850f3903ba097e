"""Publish tasks. Thin: ids in, one service call."""

from __future__ import annotations

from celery import shared_task

from catalog.exceptions import StorageUnavailable
from versioning.manifest import manifests_prune
from versioning.services import publish_job_run, publish_jobs_sweep, refused_staging_sweep


@shared_task(name="versioning.run_publish_job")
def run_publish_job(job_id: str) -> str | None:
    job = publish_job_run(job_id=job_id)
    return job.status if job else None


@shared_task(name="versioning.sweep_publish_jobs")
def sweep_publish_jobs() -> int:
    return publish_jobs_sweep()


@shared_task(name="versioning.prune_manifests")
def prune_manifests() -> int:
    """Deletes superseded manifest rows past their retention (MANIFEST_RETENTION_DAYS)."""
    return manifests_prune()


@shared_task(name="versioning.sweep_refused_staging")
def sweep_refused_staging() -> int:
    return refused_staging_sweep()


@shared_task(name="versioning.check_freshness")
def check_freshness() -> int:
    from versioning.services.freshness import datasets_freshness_check

    return datasets_freshness_check()


@shared_task(name="versioning.sweep_resumable_uploads")
def sweep_resumable_uploads() -> int:
    """Aborts resumable uploads unfinished past RESUMABLE_UPLOAD_EXPIRE_HOURS."""
    from versioning.services.resumable import resumable_uploads_sweep

    return resumable_uploads_sweep()


@shared_task(
    name="versioning.join_resumable_upload",
    autoretry_for=(StorageUnavailable,),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=8,
)
def join_resumable_upload(upload_id: str) -> str | None:
    """Joins a completed resumable upload's parts and queues its publish job."""
    from versioning.services.resumable import resumable_upload_join

    job = resumable_upload_join(upload_id=upload_id)
    return str(job.pk) if job else None
