"""A publish job belongs to the worker holding its claim (the attempt number it took):
a worker that lost its claim changes nothing; infrastructure failures send the job back
with its staged file; a job that fails for good removes what it staged."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from catalog.exceptions import StorageUnavailable
from catalog.storage import get_object_store
from tests.conftest import wait_for
from tests.versioning.conftest import (
    CSV,
    big_csv,
    queue,
    queue_from_bucket,
    sweep_until_finished,
    wait_until_running,
)
from versioning.models import DatasetVersion, JobSource, JobStatus, PublishJob
from versioning.services import publish_job_create, publish_job_run, publish_jobs_sweep
from versioning.services.jobs import (
    Claim,
    lease_kept,
    publish_job_claim,
    publish_job_fail,
    publish_job_requeue,
)
from versioning.services.publish import publish_job_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def expire_lease(job) -> None:
    PublishJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def terminate_other_connections() -> int:
    """Kills every other connection to the test database, as a database failover or a
    network cut would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_stale_workers_late_requeue_and_failure_leave_the_job_another_worker_claimed_alone(
    dataset, system
):
    store = get_object_store()
    job = queue(dataset, CSV, system)
    stale = publish_job_claim(job_id=job.pk)
    expire_lease(job)  # the first worker stalled past its lease
    fresh = publish_job_claim(job_id=job.pk)
    assert (stale.attempts, fresh.attempts) == (1, 2)

    assert publish_job_requeue(job=stale, error=StorageUnavailable("S3 was slow")) is False
    assert publish_job_fail(job=stale, message="late", code="x", store=store) is False
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.attempts == 2
    assert job.message == ""
    assert store.exists(job.staging_key)


def test_a_stale_worker_that_resumes_its_attempt_publishes_nothing_and_the_new_holder_commits(
    dataset, system, bucket_keys
):
    store = get_object_store()
    job = queue(dataset, CSV, system)
    stale = publish_job_claim(job_id=job.pk)
    expire_lease(job)
    fresh = publish_job_claim(job_id=job.pk)

    publish_job_attempt(job=stale, store=store)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.attempts == 2
    assert not DatasetVersion.objects.exists()
    assert store.exists(job.staging_key)

    publish_job_attempt(job=fresh, store=store)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert DatasetVersion.objects.get().pk == job.version_id
    assert bucket_keys("acme/") == [job.version.key]


def test_a_requeued_job_waits_out_a_backoff_before_the_sweeper_sends_it_again(dataset, system):
    job = queue(dataset, CSV, system)
    claimed = publish_job_claim(job_id=job.pk)
    assert publish_job_requeue(job=claimed, error=StorageUnavailable("down")) is True
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert "Storage failed (down); trying again in" in job.message
    # Sent again no earlier than half the first backoff (5 s * 2, times 0.5-1.5) from now.
    due = job.dispatched_at + timedelta(seconds=settings.PUBLISH_JOB_REDISPATCH_SECONDS)
    assert due >= timezone.now() + timedelta(seconds=4)


def test_a_job_that_runs_out_of_attempts_fails_once_and_removes_its_staged_file(
    dataset, system, bucket_keys
):
    job = queue(dataset, CSV, system)
    # Every worker so far died holding it.
    PublishJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        attempts=settings.PUBLISH_JOB_MAX_ATTEMPTS,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert bucket_keys("acme/") == [job.staging_key]

    finished = publish_job_run(job_id=job.pk)
    assert finished.status == JobStatus.FAILED
    assert finished.error_code == "interrupted"
    assert bucket_keys("acme/") == []
    assert publish_job_run(job_id=job.pk) is None  # failed for good: nobody takes it again


def test_a_job_failing_for_good_removes_the_uncommitted_object_it_copied(
    dataset, system, bucket_keys
):
    store = get_object_store()
    job = queue(dataset, CSV, system)
    claimed = publish_job_claim(job_id=job.pk)
    # Uploaded to 1.0.0's key, decided 1.1.0 and copied there.
    final = "acme/v1/gold/txn_daily/txn_daily_2024-08-10_v1.1.0.csv"
    store.copy(job.staging_key, final)
    Claim.of(claimed).update(target_version="1.1.0", target_key=final)
    claimed.target_version, claimed.target_key = "1.1.0", final  # as the worker keeps them

    assert publish_job_fail(job=claimed, message="bad", code="invalid", store=store) is True
    assert bucket_keys("acme/") == []


def test_the_lease_keeping_thread_survives_a_dropped_database_connection(dataset, system):
    job = queue(dataset, CSV, system)
    claim = Claim.of(publish_job_claim(job_id=job.pk))

    def lease():
        return PublishJob.objects.values_list("lease_until", flat=True).get(pk=job.pk)

    with lease_kept(claim) as kept:
        first = lease()
        wait_for(lambda: lease() > first, timeout=10, message="the first renewal")
        assert terminate_other_connections() >= 1  # the thread's own connection
        dropped = lease()
        # The beat after the failed one opens a new connection and renews again.
        wait_for(lambda: lease() > dropped, timeout=15, message="a renewal after the drop")
        assert kept.thread.is_alive()
        kept.check()  # the claim is still this worker's


@pytest.mark.worker
def test_a_dropped_database_connection_mid_inspection_keeps_the_upload_and_the_job_completes(
    dataset, system, start_worker
):
    data = big_csv(60)
    start_worker()
    # Without a recorded profile, the worker reads the file for a while.
    job = queue_from_bucket(dataset, data, system)
    wait_until_running(job)
    assert terminate_other_connections() >= 1

    sweep_until_finished(job)
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = DatasetVersion.objects.get(dataset=dataset)
    assert version.pk == job.version_id and version.size_bytes == len(data)
    # The worker removes the staged file just after its commit.
    wait_for(lambda: not get_object_store().exists(job.staging_key), message="staging emptied")


def test_a_job_failing_while_storage_is_away_has_its_staged_file_removed_by_the_sweeper(
    dataset, system, flaky_storage, bucket_keys
):
    job = queue(dataset, CSV, system)
    claimed = publish_job_claim(job_id=job.pk)
    flaky_storage.cut_after = 0  # storage unreachable from here on
    assert publish_job_fail(job=claimed, message="bad", code="invalid", store=get_object_store())
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.cleanup_pending
    flaky_storage.heal()
    assert bucket_keys("acme/") == [job.staging_key]

    publish_jobs_sweep()
    job.refresh_from_db()
    assert not job.cleanup_pending
    assert bucket_keys("acme/") == []


def test_a_verdict_on_the_file_records_publish_failed_and_a_fault_out_of_retries_does_not(
    dataset, system
):
    from catalog.models import DomainEvent

    refused = publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(CSV),
        filename="data.csv",
        actor=system,
        source=JobSource.COMMAND,
    )
    PublishJob.objects.filter(pk=refused.pk).update(requested_version="not-a-version")
    assert publish_job_run(job_id=refused.pk).status == JobStatus.FAILED
    [event] = DomainEvent.objects.filter(topic="publish.failed")
    assert event.payload["job_id"] == str(refused.pk)
    assert event.payload["dataset"] == "gold/txn_daily" and event.payload["error_code"] == "invalid"

    interrupted = queue(dataset, CSV, system)
    PublishJob.objects.filter(pk=interrupted.pk).update(
        status=JobStatus.RUNNING,
        attempts=settings.PUBLISH_JOB_MAX_ATTEMPTS,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert publish_job_run(job_id=interrupted.pk).status == JobStatus.FAILED
    assert DomainEvent.objects.filter(topic="publish.failed").count() == 1


def test_a_published_jobs_staged_file_that_storage_would_not_delete_is_removed_by_the_sweeper(
    dataset, system, flaky_storage, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    # A column more: decided 1.1.0, so the file uploaded to 1.0.1's key is copied.
    job = queue(dataset, b"day,store,revenue,units\n2024-08-11,ST3,1,2\n", system)
    flaky_storage.refuse_marker = b"delete /"  # storage drops every delete
    assert publish_job_run(job_id=job.pk).status == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.cleanup_pending
    flaky_storage.heal()
    assert job.staging_key in bucket_keys("acme/v1/gold/")

    publish_jobs_sweep()
    job.refresh_from_db()
    assert not job.cleanup_pending and job.status == JobStatus.SUCCEEDED
    assert bucket_keys("acme/v1/gold/") == sorted([first.version.key, job.version.key])
