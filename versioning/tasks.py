"""Publish tasks. Thin: ids in, one service call."""

from __future__ import annotations

from celery import shared_task

from versioning.services import publish_job_run, publish_jobs_sweep


@shared_task(name="versioning.run_publish_job")
def run_publish_job(job_id: str) -> str | None:
    job = publish_job_run(job_id=job_id)
    return job.status if job else None


@shared_task(name="versioning.sweep_publish_jobs")
def sweep_publish_jobs() -> int:
    return publish_jobs_sweep()


@shared_task(name="versioning.check_freshness")
def check_freshness() -> int:
    from versioning.services.freshness import datasets_freshness_check

    return datasets_freshness_check()
