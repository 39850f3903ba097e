"""Two publishes of one dataset at once, on two real workers: they are serialised per
dataset, and the later one is classified against the earlier one's result."""

from __future__ import annotations

import io

import pytest

from catalog.audit import Actor
from catalog.locks import dataset_lock
from tests.conftest import wait_for
from tests.versioning.conftest import csv_of
from versioning.models import DatasetVersion, JobSource, JobStatus, PublishJob
from versioning.services import publish_job_create, publish_job_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

ROWS = 20_000


def table(extra: str) -> bytes:
    return csv_of(
        {
            "day": ["2024-08-10"] * ROWS,
            "store": [f"ST{i % 500:04d}" for i in range(ROWS)],
            "revenue": [f"{i % 997}.25" for i in range(ROWS)],
            extra: list(range(ROWS)),
        }
    )


def queue(dataset, data: bytes):
    return publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(data),
        filename="day.csv",
        actor=Actor.system(via="command"),
        source=JobSource.COMMAND,
    )


def test_two_workers_publishing_one_dataset_never_make_two_current_versions(dataset, start_worker):
    first = publish_job_run(
        job_id=queue(dataset, csv_of({"day": ["2024-08-09"], "store": ["A"], "revenue": [1.5]})).pk
    )
    assert first.status == JobStatus.SUCCEEDED, first.message
    start_worker()
    start_worker()

    # Each adds a different column to 1.0.0; whichever commits second no longer has the
    # other's column, so against the first one's result it is a breaking change. The test
    # holds the dataset's lock until both workers are running their job, so that the two
    # really are in flight at once, whatever the machine's load.
    with dataset_lock(dataset.pk):
        jobs = [queue(dataset, table("units")), queue(dataset, table("visits"))]
        wait_for(
            lambda: (
                PublishJob.objects.filter(
                    pk__in=[j.pk for j in jobs], status=JobStatus.RUNNING
                ).count()
                == 2
            ),
            timeout=60,
            interval=0.05,
            message="both jobs to be running at once",
        )

    def all_finished():
        for job in jobs:
            job.refresh_from_db()
        return all(job.is_finished for job in jobs)

    wait_for(all_finished, timeout=120, interval=0.2, message="both publish jobs")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2, [j.message for j in jobs]

    versions = DatasetVersion.objects.filter(dataset=dataset)
    assert versions.filter(is_current=True).count() == 1
    numbers = list(versions.values_list("version", flat=True))
    assert len(numbers) == len(set(numbers)) == 3
    earlier, later = sorted((j.version for j in jobs), key=lambda v: v.published_at)
    assert (earlier.version, earlier.change_type, earlier.parent) == (
        "1.1.0",
        "minor",
        first.version,
    )
    assert later.parent == earlier
    assert later.diff["base_version"] == "1.1.0"
    assert (later.version, later.change_type, later.breaking) == ("2.0.0", "major", True)
    assert [r["name"] for r in later.diff["removed"]] == [
        c["name"] for c in earlier.schema if c["name"] in ("units", "visits")
    ]
    assert later.is_current
    assert PublishJob.objects.filter(status=JobStatus.SUCCEEDED).count() == 3


def test_a_publish_waiting_for_the_dataset_lock_keeps_its_lease(dataset, start_worker, settings):
    from datetime import timedelta

    from django.utils import timezone

    start_worker()
    with dataset_lock(dataset.pk):
        job = queue(dataset, table("units"))
        wait_for(
            lambda: PublishJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
            timeout=60,
            message="the job to be running",
        )
        until = timezone.now() + timedelta(seconds=settings.PUBLISH_JOB_LEASE_SECONDS + 2)

        def lease_outlived():
            job.refresh_from_db()
            assert job.lease_until > timezone.now(), "the waiting job looked abandoned"
            return timezone.now() > until

        wait_for(lease_outlived, timeout=60, interval=0.5, message="a lease's length to pass")
    wait_for(lambda: PublishJob.objects.get(pk=job.pk).is_finished, message="the job")
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
