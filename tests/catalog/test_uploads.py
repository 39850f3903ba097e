"""Unfinished uploads never stay in storage for good: a failed upload is aborted where
possible, and a periodic sweep aborts those left behind by killed processes."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta

import pytest

from catalog.exceptions import StorageUnavailable
from catalog.storage import LocalObjectStore, get_object_store, uploads_abandoned_abort
from catalog.tasks import abort_abandoned_uploads


class Failing(io.RawIOBase):
    """A stream that breaks after `size` bytes, as a client that drops the connection."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("the client went away")
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return b"x" * n


def multipart_uploads(s3_server) -> list[dict]:
    return s3_server.list_multipart_uploads(Bucket=os.environ["S3_BUCKET"]).get("Uploads", [])


def test_an_upload_that_fails_midway_leaves_no_multipart_upload_behind(s3_server):
    store = get_object_store()
    with pytest.raises(ConnectionResetError):
        store.write("acme/staging/broken.csv", Failing(20 * 1024 * 1024))
    assert multipart_uploads(s3_server) == []
    assert not store.exists("acme/staging/broken.csv")


def test_an_upload_whose_abort_cannot_get_through_is_aborted_by_the_sweep(
    s3_server, flaky_storage, settings
):
    store = get_object_store()
    # The storage goes away 12 MiB into a 24 MiB upload: the upload fails, and so does
    # boto3's own abort of it.
    flaky_storage.cut_after = 12 * 1024 * 1024
    with pytest.raises(StorageUnavailable):
        store.write("acme/staging/cut.csv", io.BytesIO(b"x" * 24 * 1024 * 1024))
    flaky_storage.heal()
    assert len(multipart_uploads(s3_server)) == 1

    # moto reports every upload as started in 2010, so any age finds it abandoned; the
    # age itself is checked on the embedded store below.
    settings.MULTIPART_ABANDON_HOURS = 24
    assert abort_abandoned_uploads() == 1
    assert multipart_uploads(s3_server) == []


def test_the_sweep_aborts_an_upload_a_killed_process_left_behind(s3_server):
    bucket = os.environ["S3_BUCKET"]
    upload = s3_server.create_multipart_upload(Bucket=bucket, Key="acme/staging/killed.csv")
    s3_server.upload_part(
        Bucket=bucket,
        Key="acme/staging/killed.csv",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    assert uploads_abandoned_abort() == 1
    assert multipart_uploads(s3_server) == []


def test_the_embedded_store_sweeps_temporary_files_of_writes_that_never_finished(tmp_path):
    from django.core.files.storage import FileSystemStorage

    store = LocalObjectStore(FileSystemStorage(location=tmp_path))
    store.write("acme/v1/a.csv", io.BytesIO(b"a\n1\n"))
    left = tmp_path / "acme" / "staging" / ".incoming-abc123"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half")
    old = time.time() - 25 * 3600
    os.utime(left, (old, old))
    fresh = tmp_path / "acme" / "staging" / ".incoming-def456"
    fresh.write_bytes(b"under way")

    assert store.abandoned_uploads_abort(older_than=timedelta(hours=24)) == 1
    assert not left.exists() and fresh.exists()
    assert store.exists("acme/v1/a.csv")
