"""Two publishes of one dataset at once, on two real workers: they are serialised per
dataset, and the later one is classified against the earlier one's result."""

from __future__ import annotations

import io

import pytest

from catalog.audit import Actor
from tests.conftest import wait_for
from tests.versioning.conftest import csv_of
from versioning.models import DatasetVersion, JobSource, JobStatus, PublishJob
from versioning.services import publish_job_create, publish_job_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

ROWS = 60_000


def table(extra: str) -> bytes:
    """A few MB, so both workers are inspecting at the same time."""
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
        actor=Actor(via="command"),
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
    # other's column, so against the first one's result it is a breaking change.
    jobs = [queue(dataset, table("units")), queue(dataset, table("visits"))]

    def all_finished():
        for job in jobs:
            job.refresh_from_db()
        return all(job.is_finished for job in jobs)

    wait_for(all_finished, timeout=120, interval=0.2, message="both publish jobs")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2, [j.message for j in jobs]
    # Both ran at once on different workers, overlapping in time.
    assert jobs[0].started_at < jobs[1].finished_at and jobs[1].started_at < jobs[0].finished_at

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
