"""Faults that must never lose a publish or leave one half-done: killed workers, a
broker that is down, a crash between storing and committing, a key written twice."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time

import pytest
from django.db import connection

from catalog.exceptions import Conflict
from catalog.storage import copy_immutable, get_object_store, sha256_of
from config.celery import app as celery_app
from tests.conftest import wait_for
from tests.versioning.conftest import (
    CSV,
    big_csv,
    finished,
    queue,
    queue_from_bucket,
    sweep_until_finished,
    wait_until_running,
)
from versioning.manifest import manifest_latest
from versioning.models import DatasetVersion, JobStatus
from versioning.services import publish_job_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_a_real_worker_publishes_a_queued_job(dataset, system, start_worker):
    start_worker()
    job = queue(dataset, CSV, system)
    wait_for(lambda: finished(job), message="the job")
    assert job.status == JobStatus.SUCCEEDED, job.message
    # The manifest handler ran in the worker, after commit, through the outbox.
    manifest = manifest_latest(organization=dataset.organization)
    wait_for(lambda: manifest.__class__.objects.get(pk=manifest.pk).written_at, message="manifest")
    with get_object_store().open("acme/v1/manifests/latest.json") as stream:
        assert job.version.sha256.encode() in stream.read()


def test_a_worker_killed_mid_publish_is_replaced_and_the_job_completes_once(
    dataset, system, start_worker
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    assert first.status == JobStatus.SUCCEEDED

    worker = start_worker()
    # A job without a recorded profile: its worker spends its time reading the file.
    job = queue_from_bucket(dataset, big_csv(120), system)
    wait_until_running(job)
    worker.kill()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # killed half-way: nobody finished it

    start_worker()

    sweep_until_finished(job, timeout=120)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.attempts == 2
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 2
    assert DatasetVersion.objects.get(is_current=True).pk == job.version_id


# --- The broker down ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, so the test can stop and start it."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_for(up, timeout=10, message="redis-server")

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed for this test (apt-get install redis-server)")
    redis = PrivateRedis()
    redis.start()
    saved = celery_app.conf.broker_url
    _point_celery_at(redis.url)
    yield redis
    redis.stop()
    _point_celery_at(saved)


def _point_celery_at(url: str) -> None:
    """Sends this process's tasks to `url` from now on (drops the cached connections)."""
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def test_with_the_broker_down_an_upload_is_queued_promptly_and_runs_once_it_is_back(
    dataset, system, start_worker, private_redis
):
    private_redis.stop()
    started = time.monotonic()
    job = queue(dataset, CSV, system)
    assert time.monotonic() - started < 5
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.dispatched_at is None  # the task could not be sent

    private_redis.start()
    # Nothing was sent while the broker was down: only the sweeper can bring the job back.
    start_worker(env={"REDIS_URL": private_redis.url})

    sweep_until_finished(job, timeout=60)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 1


# --- A crash between storing the object and committing the version ------------------


class VersionInsertTrigger:
    """A database trigger that refuses the insert of a new version: the object is already
    at its final key, the version row never commits, and the job's cleanup runs (a real
    crash, where no cleanup runs, is the SIGKILL test below)."""

    def install(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("""
                CREATE FUNCTION refuse_version() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'simulated crash before commit'; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER refuse_version BEFORE INSERT ON versioning_datasetversion
                FOR EACH ROW EXECUTE FUNCTION refuse_version();
            """)

    def lift(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER IF EXISTS refuse_version ON versioning_datasetversion;"
                "DROP FUNCTION IF EXISTS refuse_version();"
            )


@pytest.fixture
def version_insert_trigger():
    trigger = VersionInsertTrigger()
    yield trigger
    trigger.lift()


def test_a_commit_the_database_refuses_leaves_the_previous_version_current_and_no_orphan(
    dataset, system, version_insert_trigger, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    assert first.status == JobStatus.SUCCEEDED
    version_insert_trigger.install()

    newer = CSV + b"2024-08-11,ST3,1\n"
    job = publish_job_run(job_id=queue(dataset, newer, system).pk)
    assert job.status == JobStatus.FAILED
    assert job.target_key  # it got as far as the final key
    store = get_object_store()
    current = DatasetVersion.objects.get(is_current=True)
    assert current.pk == first.version_id
    assert sha256_of(store, current.key) == current.sha256
    assert bucket_keys("acme/v1/gold/") == [current.key]
    assert (
        manifest_latest(organization=dataset.organization).body["datasets"]["gold/txn_daily"][
            "sha256"
        ]
        == current.sha256
    )

    version_insert_trigger.lift()
    again = publish_job_run(job_id=queue(dataset, newer, system).pk)
    assert again.status == JobStatus.SUCCEEDED, again.message
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 2


def test_a_published_key_is_never_overwritten_with_other_bytes(dataset, system):
    store = get_object_store()
    store.write("acme/staging/a.csv", io.BytesIO(b"a\n1\n"))
    store.write("acme/staging/b.csv", io.BytesIO(b"a\n2\n"))
    key = "acme/v1/gold/x/x_2024-08-10_v1.0.0.csv"
    copy_immutable(store, "acme/staging/a.csv", key, sha256=sha256_of(store, "acme/staging/a.csv"))
    # The same bytes again: a harmless re-run.
    copy_immutable(store, "acme/staging/a.csv", key, sha256=sha256_of(store, "acme/staging/a.csv"))
    with pytest.raises(Conflict, match="never overwritten"):
        copy_immutable(
            store, "acme/staging/b.csv", key, sha256=sha256_of(store, "acme/staging/b.csv")
        )
    assert sha256_of(store, key) == sha256_of(store, "acme/staging/a.csv")


def test_storage_failing_while_reading_the_staged_file_retries_the_job(
    dataset, system, flaky_storage
):
    job = queue_from_bucket(dataset, big_csv(24), system)
    flaky_storage.cut_downstream_after = 6 * 1024 * 1024
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert flaky_storage.cuts >= 1
    assert job.status == JobStatus.QUEUED, job.message
    assert "Storage failed" in job.message
    assert not DatasetVersion.objects.exists()

    flaky_storage.heal()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message


def test_storage_failing_while_copying_to_the_final_key_retries_and_leaves_nothing_there(
    dataset, system, flaky_storage, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    # A column more: 1.1.0, so the file uploaded to 1.0.1's key is copied.
    job = queue(dataset, b"day,store,revenue,units\n2024-08-11,ST3,1,2\n", system)
    proxy = flaky_storage
    proxy.refuse_marker = b"x-amz-copy-source"  # the copy to the final key fails
    try:
        publish_job_run(job_id=job.pk)
        job.refresh_from_db()
        assert proxy.cuts >= 1
        assert job.status == JobStatus.QUEUED  # a temporary failure: it will be retried
        assert "Storage failed" in job.message
        assert bucket_keys("acme/v1/gold/") == sorted([first.version.key, job.staging_key])
        assert DatasetVersion.objects.get(is_current=True).pk == first.version_id

        proxy.heal()
        publish_job_run(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.message
        assert job.attempts == 2
    finally:
        proxy.heal()


def test_a_worker_killed_after_storing_the_object_and_before_the_commit_publishes_once_on_rerun(
    dataset, system, start_worker, bucket_keys, tmp_path
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    assert first.status == JobStatus.SUCCEEDED
    marker = tmp_path / "crashed"
    crashing = start_worker(env={"PROBE_CRASH_BEFORE_COMMIT": str(marker)})

    newer = CSV + b"2024-08-11,ST3,1\n"
    job = queue(dataset, newer, system)
    wait_for(marker.exists, timeout=60, message="the worker to reach the commit")
    wait_for(lambda: crashing.proc.poll() is not None, timeout=10, message="the worker to die")
    target_key = marker.read_text()

    # Killed between storing and committing: the object is at its final key, no version
    # refers to it, and the previous version is still current and intact.
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    store = get_object_store()
    assert store.exists(target_key)
    current = DatasetVersion.objects.get(dataset=dataset, is_current=True)
    assert current.pk == first.version_id
    assert sha256_of(store, current.key) == current.sha256
    manifest = manifest_latest(organization=dataset.organization)
    assert manifest.body["datasets"]["gold/txn_daily"]["sha256"] == current.sha256

    start_worker()

    sweep_until_finished(job, timeout=90)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.attempts == 2
    versions = DatasetVersion.objects.filter(dataset=dataset)
    assert versions.count() == 2
    new = versions.get(is_current=True)
    assert new.pk == job.version_id and new.key == target_key  # the stored object reused
    assert sha256_of(store, new.key) == new.sha256
    # No object left that no version refers to, and nothing left in staging.
    assert bucket_keys("acme/v1/gold/") == sorted(v.key for v in versions)
    # The worker removes the staged file just after its commit.
    wait_for(lambda: bucket_keys("acme/staging/") == [], message="staging emptied")
