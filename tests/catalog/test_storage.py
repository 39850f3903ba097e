"""The storage interface over local files and over the S3 server on loopback."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from catalog.exceptions import Conflict, NotFound, StorageUnavailable
from catalog.storage import (
    LocalObjectStore,
    S3ObjectStore,
    copy_immutable,
    get_object_store,
    sha256_of,
    verify_download_signature,
)
from tests.faults import FlakyProxy

DATA = b"a,b\n1,2\n" * 1000


@pytest.fixture
def local_store(settings, tmp_path) -> LocalObjectStore:
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "objects"},
        },
    }
    store = get_object_store()
    assert isinstance(store, LocalObjectStore)
    return store


@pytest.fixture
def s3_store() -> S3ObjectStore:
    store = get_object_store()
    assert isinstance(store, S3ObjectStore)
    return store


@pytest.fixture(params=["local_store", "s3_store"])
def store(request):
    return request.getfixturevalue(request.param)


class Failing(io.RawIOBase):
    """A source that breaks after `limit` bytes, like a dropped upload."""

    def __init__(self, data: bytes, limit: int) -> None:
        self.stream, self.limit, self.read_so_far = io.BytesIO(data), limit, 0

    def readable(self):
        return True

    def read(self, size=-1):
        if self.read_so_far >= self.limit:
            raise OSError("connection reset by peer")
        chunk = self.stream.read(
            min(size if size > 0 else self.limit, self.limit - self.read_so_far)
        )
        self.read_so_far += len(chunk)
        return chunk


def test_a_written_object_reads_back_byte_for_byte(store):
    progress = []
    assert store.write("acme/x/a.csv", io.BytesIO(DATA), on_progress=progress.append) == len(DATA)
    assert progress[-1] == len(DATA)
    with store.open("acme/x/a.csv") as stream:
        assert stream.read() == DATA
    assert store.exists("acme/x/a.csv") and store.size("acme/x/a.csv") == len(DATA)


def test_copy_and_delete(store):
    store.write("acme/x/a.csv", io.BytesIO(DATA))
    store.copy("acme/x/a.csv", "acme/y/b.csv")
    assert sha256_of(store, "acme/y/b.csv") == sha256_of(store, "acme/x/a.csv")
    store.delete("acme/x/a.csv")
    store.delete("acme/x/a.csv")  # deleting what is gone is not an error
    assert not store.exists("acme/x/a.csv")
    with pytest.raises(NotFound):
        store.open("acme/x/a.csv")


def test_an_immutable_key_refuses_other_bytes(store):
    store.write("acme/s/1", io.BytesIO(b"one"))
    store.write("acme/s/2", io.BytesIO(b"two"))
    copy_immutable(store, "acme/s/1", "acme/final", sha256=sha256_of(store, "acme/s/1"))
    copy_immutable(store, "acme/s/1", "acme/final", sha256=sha256_of(store, "acme/s/1"))
    with pytest.raises(Conflict):
        copy_immutable(store, "acme/s/2", "acme/final", sha256=sha256_of(store, "acme/s/2"))
    with store.open("acme/final") as stream:
        assert stream.read() == b"one"


def test_a_write_that_fails_midway_leaves_nothing_at_the_key(store):
    with pytest.raises((OSError, StorageUnavailable)):
        store.write("acme/x/broken.csv", Failing(DATA * 2000, limit=9 * 1024 * 1024))
    assert not store.exists("acme/x/broken.csv")


def test_a_local_signed_url_works_until_it_expires_and_only_for_its_key(local_store, client):
    store = local_store
    store.write("acme/x/a.csv", io.BytesIO(DATA))
    url = urlparse(store.signed_url("acme/x/a.csv", ttl=60).url)
    response = client.get(f"{url.path}?{url.query}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == DATA
    assert response["Content-Length"] == str(len(DATA))

    ranged = client.get(f"{url.path}?{url.query}", HTTP_RANGE="bytes=4-7")
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == DATA[4:8]

    store.write("acme/x/other.csv", io.BytesIO(b"secret"))
    other = url.path.replace("a.csv", "other.csv")
    assert client.get(f"{other}?{url.query}").status_code == 403
    tampered = url.query.replace("signature=", "signature=0")
    assert client.get(f"{url.path}?{tampered}").status_code == 403
    expires = int(time.time()) - 1
    assert not verify_download_signature("acme/x/a.csv", str(expires), "whatever")


def test_an_s3_signed_url_is_a_presigned_get_of_exactly_one_key(s3_store):
    # The S3 server on loopback does not check signatures (AWS does): this test checks
    # what the URL asks for; the embedded view's test checks refusals.
    s3_store.write("acme/x/a.csv", io.BytesIO(DATA))
    signed = s3_store.signed_url("acme/x/a.csv", ttl=120, filename="a.csv")
    url = urlparse(signed.url)
    assert url.path.endswith("/acme/x/a.csv")
    assert "X-Amz-Expires=120" in url.query and "X-Amz-Signature=" in url.query
    signed_at = parse_qs(url.query)["X-Amz-Date"][0]
    assert (signed.expires_at - timedelta(seconds=120)).strftime("%Y%m%dT%H%M%SZ") == signed_at
    assert requests.get(url.geturl(), timeout=10).content == DATA


def test_s3_failing_mid_upload_leaves_nothing_at_the_key(settings):
    proxy = FlakyProxy(urlparse(os.environ["S3_ENDPOINT_URL"]).port)
    options = {**settings.STORAGES["datasets"]["OPTIONS"], "endpoint_url": proxy.url}
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": {**settings.STORAGES["datasets"], "OPTIONS": options},
    }
    store = get_object_store()
    proxy.cut_after = 12 * 1024 * 1024  # somewhere in the second part of the upload
    try:
        with pytest.raises(StorageUnavailable):
            store.write("acme/x/big.csv", io.BytesIO(os.urandom(24 * 1024 * 1024)))
        assert proxy.cuts >= 1
        proxy.heal()
        assert not store.exists("acme/x/big.csv")
    finally:
        proxy.close()


def test_a_copy_keeps_its_bytes_when_the_source_key_is_written_again(store):
    store.write("acme/staging/x.csv", io.BytesIO(b"first\n"))
    store.copy("acme/staging/x.csv", "acme/v1/final.csv")
    store.write("acme/staging/x.csv", io.BytesIO(b"second\n"))
    store.delete("acme/staging/x.csv")
    with store.open("acme/v1/final.csv") as stream:
        assert stream.read() == b"first\n"


def test_a_multipart_object_copies_and_reads_back_whole(store):
    data = os.urandom(3 * 1024 * 1024) * 7  # above the multipart threshold
    store.write("acme/staging/big.bin", io.BytesIO(data))
    store.copy("acme/staging/big.bin", "acme/v1/big.bin")
    with store.open("acme/v1/big.bin") as stream:
        assert stream.read() == data


def test_every_part_of_an_s3_write_carries_its_crc32_and_storage_keeps_them(s3_store):
    import zlib

    sent = []

    def seen(params, **_):
        sent.append((params.get("ChecksumAlgorithm"), params.get("PartNumber")))

    s3_store.client.meta.events.register("provide-client-params.s3.UploadPart", seen)
    data = os.urandom(3 * 1024 * 1024) * 7  # three parts of 8 MiB at most
    try:
        s3_store.write("acme/staging/big.bin", io.BytesIO(data))
    finally:
        s3_store.client.meta.events.unregister("provide-client-params.s3.UploadPart", seen)

    assert sent == [("CRC32", 1), ("CRC32", 2), ("CRC32", 3)]
    head = s3_store.client.head_object(
        Bucket=s3_store.bucket, Key="acme/staging/big.bin", ChecksumMode="ENABLED"
    )
    # Storage keeps the parts' CRC32s, rather than computing a CRC64NVME of the whole.
    assert "ChecksumCRC32" in head and "ChecksumCRC64NVME" not in head
    with s3_store.open("acme/staging/big.bin") as stream:
        assert zlib.crc32(stream.read()) == zlib.crc32(data)


def test_every_thread_of_a_process_shares_one_s3_client(s3_store):
    import threading

    seen = []

    def work(n: int) -> None:
        store = get_object_store()
        store.write(f"acme/threads/{n}.csv", io.BytesIO(DATA + str(n).encode()))
        seen.append(store.client)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen) == 4 and all(client is s3_store.client for client in seen)
    for n in range(4):
        with s3_store.open(f"acme/threads/{n}.csv") as stream:
            assert stream.read() == DATA + str(n).encode()


def test_changed_storage_settings_get_a_client_of_their_own(s3_store, settings):
    proxy = FlakyProxy(urlparse(os.environ["S3_ENDPOINT_URL"]).port)
    try:
        options = {**settings.STORAGES["datasets"]["OPTIONS"], "endpoint_url": proxy.url}
        settings.STORAGES = {
            **settings.STORAGES,
            "datasets": {**settings.STORAGES["datasets"], "OPTIONS": options},
        }
        moved = get_object_store()
        assert moved.client is not s3_store.client
        assert moved.client.meta.endpoint_url == proxy.url
        moved.write("acme/proxied.csv", io.BytesIO(DATA))
        assert s3_store.exists("acme/proxied.csv")
    finally:
        proxy.close()
