"""Helpers for the versioning tests: CSV files built from columns, and a publish that
takes every option of the pipeline."""

from __future__ import annotations

import io

import pytest

from catalog.audit import Actor
from catalog.storage import get_object_store
from tests.conftest import wait_for
from versioning.models import JobSource, JobStatus, PublishJob
from versioning.services import (
    publish_job_create,
    publish_job_create_from_object,
    publish_jobs_sweep,
)


def csv_of(columns: dict[str, list], *, order: list[str] | None = None) -> bytes:
    """A CSV with one column per key (None is an empty value)."""
    names = order or list(columns)
    rows = zip(*(columns[n] for n in names), strict=True)
    lines = [",".join(names)]
    lines += [",".join("" if v is None else str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


BASE = {
    "date_key": ["2024-08-10", "2024-08-11", "2024-08-12"],
    "store_id": ["ST1", "ST2", "ST3"],
    "revenue": [10.5, 7.25, 3.0],
    "units": [1, 2, 3],
}


def base_csv(**changes) -> bytes:
    """BASE with columns replaced (a list), added (a new name) or dropped (None)."""
    columns = dict(BASE)
    for name, values in changes.items():
        if values is None:
            columns.pop(name)
        else:
            columns[name] = values
    return csv_of(columns)


@pytest.fixture
def publish_with(system):
    """Publishes bytes through the real pipeline in this process, with any option of
    `publish_job_create`; returns the finished job."""
    from versioning.models import JobSource
    from versioning.services import publish_job_create, publish_job_run

    def run(dataset, data: bytes, *, actor: Actor | None = None, **options):
        job = publish_job_create(
            dataset=dataset,
            stream=io.BytesIO(data),
            filename=options.pop("filename", "data.csv"),
            actor=actor or system,
            source=JobSource.COMMAND,
            **options,
        )
        publish_job_run(job_id=job.pk)
        job.refresh_from_db()
        return job

    return run


# --- Publish jobs and workers, for the fault and claim tests ----------------------

CSV = b"day,store,revenue\n2024-08-10,ST1,10.5\n2024-08-10,ST2,7\n"


def big_csv(megabytes: int) -> bytes:
    row = b"2024-08-10,ST0001,1234.56,some text that takes a little room\n"
    return b"day,store,revenue,comment\n" + row * (megabytes * 1024 * 1024 // len(row))


def queue(dataset, data, system, **kwargs):
    return publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(data),
        filename="data.csv",
        actor=system,
        source=JobSource.COMMAND,
        **kwargs,
    )


def queue_from_bucket(dataset, data, system, **kwargs):
    """A job for an object already in the bucket: it has no recorded profile, so its
    worker reads and inspects the stored file (as a resumable upload's job does)."""
    key = f"{dataset.organization.slug}/incoming/data.csv"
    get_object_store().write(key, io.BytesIO(data))
    job = publish_job_create_from_object(
        dataset=dataset, source_key=key, actor=system, source=JobSource.COMMAND, **kwargs
    )
    get_object_store().delete(key)
    return job


def finished(job):
    job.refresh_from_db()
    return job.is_finished


def wait_until_running(job) -> None:
    """Until a worker has the job and has read some of its file."""
    wait_for(
        lambda: PublishJob.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, bytes_done__gt=0
        ).exists(),
        timeout=60,
        interval=0.05,
        message="the job to be running",
    )


def sweep_until_finished(job, *, timeout: float = 120) -> None:
    """Runs the sweeper, as beat would, until the job is finished."""

    def swept():
        publish_jobs_sweep()
        return finished(job)

    wait_for(swept, timeout=timeout, interval=1, message="the swept job to finish")
