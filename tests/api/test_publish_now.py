"""A small upload is published by the request that took it, once its job has committed,
exactly as a worker would publish it; when that cannot start at once it is queued."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from django.db import connection

from catalog.locks import dataset_lock
from catalog.storage import get_object_store
from tests.api.conftest import CSV, multipart, post_multipart
from versioning.models import DatasetVersion, JobStatus, Manifest, PublishJob
from versioning.services import publish_job_run

# Committed for real: the request publishes only a job whose row has committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]

MORE_ROWS = CSV + b"2024-08-12,ST0003,1.5,true\n"
DROPPED_COLUMN = b"date_key,store_id,revenue\n2024-08-12,ST0003,1.5\n"
ADDED_COLUMN = b"date_key,store_id,revenue,is_holiday,units\n2024-08-12,ST0003,1.5,true,4\n"


def upload(client, data: bytes, **fields: str):
    parts = [(name, None, value.encode()) for name, value in fields.items()]
    response = post_multipart(client, multipart([*parts, ("file", "day.csv", data)]))
    assert response.status_code == 202, response.content
    assert response["Location"] == response.json()["url"]
    return response.json()


def test_a_small_upload_is_answered_with_its_job_finished_and_its_version_current(
    published, steward, as_user, stray_uploads
):
    client = as_user(steward)
    job = upload(client, MORE_ROWS)
    assert job["status"] == "succeeded", job["message"]
    assert job["outcome"] == "published" and job["version"] == "1.0.1"
    stored = PublishJob.objects.get(pk=job["id"])
    # Run here under a claim of its own, never sent to a worker.
    assert stored.attempts == 1 and stored.dispatched_at is None
    current = DatasetVersion.objects.get(is_current=True)
    assert current.version == "1.0.1" and current.pk == stored.version_id
    manifest = client.get("/api/v1/manifest/").json()
    assert manifest["datasets"]["gold/txn_daily"]["schema_version"] == "1.0.1"
    assert Manifest.objects.latest("generated_at").body == manifest
    assert stray_uploads() == []
    # A client that follows the job anyway learns the same at once.
    assert client.get(f"{job['url']}?wait=5").json()["status"] == "succeeded"


def test_an_upload_while_another_publish_holds_the_dataset_is_queued_for_a_worker(
    published, steward, as_user
):
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_publish() -> None:
        try:
            with dataset_lock(published.pk):
                held.set()
                release.wait(30)
        finally:
            connection.close()
            done.set()

    threading.Thread(target=other_publish, daemon=True).start()
    assert held.wait(10)
    try:
        job = upload(as_user(steward), MORE_ROWS)
    finally:
        release.set()
        done.wait(10)
    assert job["status"] == "queued"
    stored = PublishJob.objects.get(pk=job["id"])
    assert stored.attempts == 0 and stored.dispatched_at is not None  # sent to the queue
    assert DatasetVersion.objects.get(is_current=True).version == "1.0.0"

    publish_job_run(job_id=job["id"])
    stored.refresh_from_db()
    assert stored.status == JobStatus.SUCCEEDED, stored.message
    assert stored.version.version == "1.0.1" and stored.version.is_current


def test_an_upload_over_the_inline_limit_is_queued(published, steward, as_user, settings):
    client = as_user(steward)
    settings.PUBLISH_INLINE_MAX_BYTES = len(MORE_ROWS)
    assert upload(client, MORE_ROWS)["status"] == "succeeded"
    bigger = MORE_ROWS + b"2024-08-13,ST0004,2,false\n"
    job = upload(client, bigger)
    assert job["status"] == "queued"
    stored = PublishJob.objects.get(pk=job["id"])
    assert stored.attempts == 0 and stored.dispatched_at is not None
    settings.PUBLISH_INLINE_MAX_BYTES = 0  # off: every upload goes to a worker
    assert upload(client, bigger + b"2024-08-14,ST0005,3,false\n")["status"] == "queued"


def test_a_refused_upload_fails_in_the_request_and_leaves_the_previous_version_current(
    published, steward, as_user, stray_uploads
):
    before = Manifest.objects.latest("generated_at")
    job = upload(as_user(steward), DROPPED_COLUMN, version="1.0.1")
    assert job["status"] == "failed"
    assert job["error_code"] == "invalid" and "is_holiday" in job["message"]
    assert DatasetVersion.objects.get(is_current=True).version == "1.0.0"
    assert DatasetVersion.objects.count() == 1
    assert Manifest.objects.latest("generated_at").pk == before.pk
    # Its file waits in staging for a one-click republish as 2.0.0, at no version's key.
    stored = PublishJob.objects.get(pk=job["id"])
    assert stray_uploads() == [stored.staging_key]
    assert "/staging/" in stored.staging_key


@pytest.mark.s3
def test_storage_failing_during_an_inline_publish_sends_the_job_to_the_queue(
    published, steward, as_user, flaky_storage
):
    # A column more: 1.1.0, so the file uploaded to 1.0.1's key is copied, and that fails.
    flaky_storage.refuse_marker = b"x-amz-copy-source"
    try:
        job = upload(as_user(steward), ADDED_COLUMN)
    finally:
        flaky_storage.heal()
    assert flaky_storage.cuts >= 1
    assert job["status"] == "queued", job["message"]
    assert "Storage failed" in job["message"] and "trying again" in job["message"]
    assert DatasetVersion.objects.get(is_current=True).version == "1.0.0"
    stored = PublishJob.objects.get(pk=job["id"])
    assert stored.attempts == 1 and stored.dispatched_at is not None  # after its backoff

    publish_job_run(job_id=job["id"])
    stored.refresh_from_db()
    assert stored.status == JobStatus.SUCCEEDED and stored.attempts == 2, stored.message
    assert DatasetVersion.objects.get(is_current=True).version == "1.1.0"


def test_a_small_upload_asks_storage_nothing_before_writing_at_its_versions_key(
    published, steward, as_user, s3_calls
):
    job = upload(as_user(steward), MORE_ROWS)
    assert job["status"] == "succeeded", job["message"]
    stored = PublishJob.objects.get(pk=job["id"])
    assert stored.version.key == stored.staging_key  # written where the version stays
    if s3_calls is not None:
        # One conditional PUT, which storage refuses over an existing object: no HEAD.
        assert s3_calls.counts == {"PutObject": 1}, s3_calls.counts


def test_a_small_upload_that_finds_an_object_at_its_versions_key_goes_to_staging(
    published, steward, as_user, stray_uploads
):
    first = DatasetVersion.objects.get(is_current=True)
    key = first.key.replace("_v1.0.0.", "_v1.0.1.")
    store = get_object_store()
    # Bytes nobody recorded at the key 1.0.1 will have (another upload whose job was
    # never written, say): storage refuses to write over them.
    store.write(key, io.BytesIO(b"day\n2024-01-01\n"))

    job = upload(as_user(steward), MORE_ROWS)

    stored = PublishJob.objects.get(pk=job["id"])
    assert "/staging/" in stored.staging_key and stored.target_key == ""
    assert stored.profile["sha256"] == hashlib.sha256(MORE_ROWS).hexdigest()
    with store.open(key) as stream:
        assert stream.read() == b"day\n2024-01-01\n"  # left alone
    # Its publish waits for the key, as any publish whose version's key holds other bytes.
    assert job["status"] == "queued"
    assert DatasetVersion.objects.get(is_current=True).version == "1.0.0"
    assert PublishJob.objects.count() == 2  # no row of the refused write is left
    store.delete(key)
    publish_job_run(job_id=job["id"])
    stored.refresh_from_db()
    assert stored.status == JobStatus.SUCCEEDED, stored.message
    assert stored.version.version == "1.0.1" and stray_uploads() == []
    with store.open(stored.version.key) as stream:
        assert stream.read() == MORE_ROWS
