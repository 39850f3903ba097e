"""The file is inspected while it uploads: the job records its profile, the worker
decides from it without reading the object again, an explicit version's file goes
straight to its key, and whatever is uploaded but not published is removed."""

from __future__ import annotations

import gzip
import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.digests import DigestMismatch
from catalog.exceptions import Conflict
from catalog.inspection import inspect_stream
from catalog.storage import get_object_store, sha256_of
from tests.versioning.conftest import CSV, big_csv, queue, queue_from_bucket
from versioning.models import DatasetVersion, JobSource, JobStatus, PublishJob
from versioning.services import publish_job_create, publish_job_run

# The tests that count S3 requests run in the services mode only; the rest in both.
pytestmark = [pytest.mark.django_db]
both_modes = pytest.mark.both_modes

NEWER = CSV + b"2024-08-11,ST3,1\n"
# Over one 8 MiB part: a multipart upload with several parts on S3.
LARGE = 20


def _unfinished_uploads(s3_server) -> list:
    if s3_server is None:
        root = get_object_store().root
        return [p for p in root.rglob(".incoming-*")] if root.exists() else []
    return s3_server.list_multipart_uploads(Bucket=os.environ["S3_BUCKET"]).get("Uploads", [])


def _parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"day": ["2024-08-10", None], "n": [1, 2]}), sink)
    return sink.getvalue()


@both_modes
@pytest.mark.parametrize(
    "data, filename",
    [
        (big_csv(LARGE), "data.csv"),
        (gzip.compress(big_csv(2)), "data.csv.gz"),
        (_parquet(), "data.parquet"),
    ],
    ids=["csv-multipart", "csv.gz", "parquet"],
)
def test_the_profile_recorded_while_uploading_is_what_inspecting_the_stored_object_gives(
    dataset, system, data, filename
):
    job = publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(data),
        filename=filename,
        actor=system,
        source=JobSource.COMMAND,
    )
    store = get_object_store()

    assert job.profile is not None
    with store.open(job.staging_key) as stream:
        stored = inspect_stream(stream, format=job.format)
    assert job.profile == stored.as_json()
    # The bytes hashed are the bytes stored.
    assert job.profile["sha256"] == sha256_of(store, job.staging_key)
    assert job.profile["size_bytes"] == len(data) == job.bytes_total


def test_a_publish_with_a_recorded_profile_reads_nothing_and_moves_with_one_copy(
    dataset, system, s3_calls, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    job = queue(dataset, big_csv(LARGE), system)
    assert s3_calls.counts["UploadPart"] >= 3 and s3_calls.counts["CompleteMultipartUpload"] == 1

    s3_calls.reset()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert s3_calls.counts["GetObject"] == 0
    assert s3_calls.counts["CopyObject"] == 1
    assert s3_calls.counts["UploadPartCopy"] == 0
    assert bucket_keys("acme/staging/") == []
    assert bucket_keys("acme/v1/gold/") == sorted([first.version.key, job.version.key])
    assert sha256_of(get_object_store(), job.version.key) == job.version.sha256


def test_an_explicit_version_is_uploaded_straight_to_its_key_and_published_without_a_copy(
    dataset, system, s3_calls, bucket_keys
):
    publish_job_run(job_id=queue(dataset, CSV, system).pk)
    job = queue(dataset, NEWER, system, requested_version="1.0.1")
    assert job.staging_key == job.target_key and job.target_version == "1.0.1"
    assert bucket_keys("acme/staging/") == []

    s3_calls.reset()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.version.key == job.target_key
    assert s3_calls.counts["GetObject"] == s3_calls.counts["CopyObject"] == 0
    assert job.version.key in bucket_keys("acme/v1/gold/")


def test_a_data_only_change_is_uploaded_to_the_key_it_gets_and_published_without_a_copy(
    dataset, system, s3_calls, bucket_keys
):
    first = queue(dataset, CSV, system)
    assert first.target_version == "1.0.0" and first.staging_key == first.target_key
    publish_job_run(job_id=first.pk)
    job = queue(dataset, NEWER, system)
    assert job.target_version == "1.0.1" and job.staging_key == job.target_key

    s3_calls.reset()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.version.key == job.staging_key
    assert s3_calls.counts["GetObject"] == s3_calls.counts["CopyObject"] == 0
    assert s3_calls.counts["DeleteObject"] == 0
    assert bucket_keys("acme/staging/") == []
    # The bytes hashed are the bytes stored.
    assert sha256_of(get_object_store(), job.version.key) == job.version.sha256


@both_modes
def test_identical_bytes_uploaded_to_the_next_versions_key_leave_nothing_there(
    dataset, system, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    again = queue(dataset, CSV, system)
    assert again.target_version == "1.0.1"

    publish_job_run(job_id=again.pk)
    again.refresh_from_db()

    assert again.status == JobStatus.SUCCEEDED and again.version_id == first.version_id
    assert bucket_keys("acme/") == [first.version.key]


class TakenMidway(io.BytesIO):
    """An upload during which another publish puts its own file at `key` (a worker that
    decided the same version copying there), once `after` bytes were read."""

    def __init__(self, data: bytes, *, key: str, after: int) -> None:
        super().__init__(data)
        self.key, self.after = key, after

    def read(self, size=-1):
        if self.key and self.tell() >= self.after:
            get_object_store().write(self.key, io.BytesIO(b"day\n2024-01-01\n"))
            self.key = ""
        return super().read(size)


@both_modes
@pytest.mark.parametrize("size", [0, LARGE], ids=["one-request", "multipart"])
def test_a_version_taken_while_its_predicted_file_uploads_keeps_the_others_bytes(
    dataset, system, s3_server, bucket_keys, size
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    key = first.version.key.replace("_v1.0.0.", "_v1.0.1.")
    data = big_csv(size) if size else NEWER

    with pytest.raises(Conflict, match="took version 1.0.1 while this file was uploading"):
        queue_stream = TakenMidway(data, key=key, after=min(len(data) // 2, 9 * 1024 * 1024))
        publish_job_create(
            dataset=dataset,
            stream=queue_stream,
            filename="data.csv",
            actor=system,
            source=JobSource.COMMAND,
        )

    with get_object_store().open(key) as stream:
        assert stream.read() == b"day\n2024-01-01\n"
    assert bucket_keys("acme/") == sorted([first.version.key, key])
    assert _unfinished_uploads(s3_server) == []
    assert PublishJob.objects.count() == 1


def test_the_publish_of_an_object_in_the_bucket_still_works_and_reads_it_once(
    dataset, system, s3_calls, bucket_keys
):
    job = queue_from_bucket(dataset, NEWER, system)
    assert job.profile is None

    s3_calls.reset()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert s3_calls.counts["GetObject"] == 1
    assert job.version.row_count == 3 and job.version.sha256 == sha256_of(
        get_object_store(), job.version.key
    )
    assert bucket_keys("acme/staging/") == [] and bucket_keys("acme/incoming/") == []


@both_modes
def test_a_publish_without_a_recorded_profile_inspects_the_stored_file_in_both_modes(
    dataset, system
):
    job = queue_from_bucket(dataset, NEWER, system)
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.version.row_count == 3 and job.version.schema[0]["type"] == "date"


class CutOff:
    """An upload stream whose client goes away after `after` bytes."""

    def __init__(self, data: bytes, after: int) -> None:
        self._stream = io.BytesIO(data)
        self._after = after

    def read(self, size: int = -1) -> bytes:
        if self._stream.tell() >= self._after:
            raise OSError("the client went away")
        return self._stream.read(min(size, self._after - self._stream.tell()))


@both_modes
@pytest.mark.parametrize("version", ["", "2.0.0"], ids=["to-staging", "to-its-version-key"])
def test_an_upload_cut_off_midway_leaves_no_object_and_no_unfinished_upload(
    dataset, system, s3_server, bucket_keys, version
):
    with pytest.raises(OSError, match="went away"):
        publish_job_create(
            dataset=dataset,
            stream=CutOff(big_csv(LARGE), after=17 * 1024 * 1024),
            filename="data.csv",
            actor=system,
            source=JobSource.COMMAND,
            requested_version=version,
        )
    assert bucket_keys("acme/") == []
    assert _unfinished_uploads(s3_server) == []
    assert not PublishJob.objects.exists()


@both_modes
def test_an_upload_refused_for_its_digest_leaves_no_object_and_no_unfinished_upload(
    dataset, system, s3_server, bucket_keys
):
    with pytest.raises(DigestMismatch):
        queue(dataset, big_csv(LARGE), system, expected_sha256="0" * 64, requested_version="2.0.0")
    assert bucket_keys("acme/") == []
    assert _unfinished_uploads(s3_server) == []
    assert not PublishJob.objects.exists()


@both_modes
def test_a_refused_version_keeps_the_previous_current_and_its_file_waits_in_staging(
    dataset, system, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    dropped = b"day,store\n2024-08-10,ST1\n"
    job = queue(dataset, dropped, system, requested_version="1.1.0")
    uploaded_to = job.staging_key

    publish_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.FAILED and job.error_details["change_type"] == "major"
    assert DatasetVersion.objects.get(is_current=True).pk == first.version_id
    # The file waits for a republish in staging, not at the refused version's key.
    assert job.staging_key != uploaded_to and bucket_keys("acme/staging/") == [job.staging_key]
    assert bucket_keys("acme/v1/gold/") == [first.version.key]


@both_modes
def test_an_explicit_version_whose_job_fails_leaves_no_object_behind(dataset, system, bucket_keys):
    publish_job_run(job_id=queue(dataset, CSV, system).pk)
    late = queue(dataset, NEWER, system, requested_version="1.1.0")
    assert late.staging_key == late.target_key
    # Another publish takes a higher version first.
    ahead = publish_job_run(job_id=queue(dataset, NEWER + b"x,y,1\n", system, version="2.0.0").pk)
    assert ahead.status == JobStatus.SUCCEEDED, ahead.message

    publish_job_run(job_id=late.pk)
    late.refresh_from_db()

    assert late.status == JobStatus.FAILED and "not above" in late.message
    versions = sorted(DatasetVersion.objects.values_list("key", flat=True))
    assert bucket_keys("acme/v1/gold/") == versions
    assert bucket_keys("acme/staging/") == []


@both_modes
@pytest.mark.django_db(transaction=True)  # a temporary failure resets the connection
def test_a_publish_that_would_take_a_key_another_upload_holds_waits_for_it(
    dataset, system, bucket_keys
):
    publish_job_run(job_id=queue(dataset, CSV, system).pk)
    explicit = queue(dataset, NEWER, system, requested_version="1.0.1")
    # Decided automatically, this data-only change is 1.0.1 too, and so its key.
    automatic = queue(dataset, NEWER + b"2024-08-12,ST4,2\n", system)

    publish_job_run(job_id=automatic.pk)
    automatic.refresh_from_db()
    assert automatic.status == JobStatus.QUEUED and "still running" in automatic.message
    assert get_object_store().exists(explicit.staging_key)

    publish_job_run(job_id=explicit.pk)
    publish_job_run(job_id=automatic.pk)
    explicit.refresh_from_db()
    automatic.refresh_from_db()

    assert explicit.status == automatic.status == JobStatus.SUCCEEDED, automatic.message
    assert (explicit.version.version, automatic.version.version) == ("1.0.1", "1.0.2")
    store = get_object_store()
    assert sha256_of(store, explicit.version.key) == explicit.version.sha256
    assert bucket_keys("acme/v1/gold/") == sorted(
        DatasetVersion.objects.values_list("key", flat=True)
    )


@both_modes
def test_a_second_upload_of_a_version_being_uploaded_goes_to_staging(dataset, system):
    first = queue(dataset, CSV, system, requested_version="1.0.0")
    second = queue(dataset, NEWER, system, requested_version="1.0.0")
    assert first.staging_key == first.target_key
    assert second.staging_key.startswith("acme/staging/") and second.target_key == ""


@both_modes
def test_storage_refuses_to_complete_a_write_over_an_existing_key(dataset, s3_server):
    store = get_object_store()
    key = "acme/v1/gold/x/x_2024-08-10_v1.0.0.csv"
    store.write(key, io.BytesIO(b"a\n1\n"), if_absent=True)
    with pytest.raises(Conflict, match="never overwritten"):
        store.write(key, io.BytesIO(big_csv(LARGE)), if_absent=True)
    with store.open(key) as stream:
        assert stream.read() == b"a\n1\n"
    assert _unfinished_uploads(s3_server) == []


@both_modes
@pytest.mark.django_db(transaction=True)  # a temporary failure resets the connection
def test_other_bytes_at_the_final_key_are_left_alone_and_the_job_waits(dataset, system):
    from django.utils import timezone

    from catalog.keys import version_key

    publish_job_run(job_id=queue(dataset, CSV, system).pk)
    key = version_key(
        org="acme",
        layer="gold",
        name="txn_daily",
        day=timezone.now().date(),
        version="1.0.1",
        format="csv",
    )
    store = get_object_store()
    # Another upload to that key finished just before its job was recorded.
    store.write(key, io.BytesIO(b"day\n2024-01-01\n"))
    job = queue(dataset, NEWER, system)

    publish_job_run(job_id=job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.QUEUED and job.target_key == ""
    with store.open(key) as stream:
        assert stream.read() == b"day\n2024-01-01\n"
