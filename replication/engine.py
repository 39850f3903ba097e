"""The copy engine: the one place that moves a version's bytes between regions.

A copy becomes visible at the version's key in the target only after it was proven to
be the version's bytes, so the final key never holds a partial or wrong object,
whatever fails on the way:

1. Clean up what an earlier attempt of this replica left in the target (a killed
   worker's staged object, its unfinished multipart uploads).
2. Copy, one of three ways:
   - **Streamed into S3** (source and target on different endpoints): read from the
     source in slices paced by the link's bandwidth limit (`replication.throttle`),
     hashed (SHA-256) as they pass, and sent as the parts of a multipart upload to the
     final key, each part with its `Content-MD5`, so the server refuses a part whose
     bytes were damaged on the way (and its ETag, when an MD5, is checked too). An
     unfinished multipart upload is invisible: it is the staging area. Only when every
     part was accepted and the whole stream hashed to the version's SHA-256 is the
     upload completed, which makes the object appear at once; otherwise it is aborted.
     Nothing is read back, so a copy costs one read and one write.
   - **Server-side** (buckets on the same endpoint with the same credentials): one
     CopyObject (a multipart copy past 5 GiB) to a staging key, read back and hashed on
     the target, then promoted to the final key and the staging key deleted.
   - **Into a local folder** (the embedded mode): streamed to a staging file, read back
     and hashed, then promoted with a hard link.
   The work runs in a thread; the calling thread keeps the replica's lease alive and
   stops the copy as soon as the lease is lost.

Regions are stores of `catalog.storage`'s interface: the primary is the storage
publishing writes to; another region is an S3-compatible bucket (credentials read from
the environment variables the region names, when the copy runs) or a local folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files.storage import FileSystemStorage

from catalog.exceptions import InvalidInput, StorageUnavailable
from catalog.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    get_object_store,
    sha256_of,
)
from replication.models import Region
from replication.throttle import throttle_wait

_SINGLE_COPY_LIMIT = 5 * 1024**3
_stores: dict[tuple, S3ObjectStore] = {}
_stores_lock = threading.Lock()
_PRIMARY_CREDENTIALS = ("S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")


class LeaseLost(Exception):
    """Another worker holds the replica now; this copy stops and changes nothing."""


class ChecksumMismatch(StorageUnavailable):
    """The bytes that landed are not the version's: the copy is tried again."""

    code = "checksum_mismatch"


@dataclass(frozen=True)
class CopyResult:
    bytes_transferred: int
    sha256: str
    method: str
    seconds: float
    # Wall-clock moments of the first and last byte through the (throttled) reader.
    stream_started_at: float | None = None
    stream_ended_at: float | None = None
    # "content-md5" (every part accepted against its MD5, the stream's SHA-256 the
    # version's) or "read-back" (the landed object hashed on the target).
    verified_by: str = ""


def boto_client_config(addressing_style: str):
    """The client configuration of every region's S3 client, as publishing's: our
    SHA-256 is the integrity check, so boto3's default CRC checksums (which some
    S3-compatible servers reject or do not keep across copies) only where required."""
    from botocore.config import Config

    return Config(
        s3={"addressing_style": addressing_style or "path"},
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
    )


def region_missing_credentials(region: Region) -> list[str]:
    """The environment variables the region names that are not set here."""
    names = (region.access_key_env, region.secret_key_env)
    return [name for name in names if name and not os.environ.get(name)]


def region_store(region: Region) -> ObjectStore:
    """The store behind a region (credentials read now, from the environment)."""
    if region.is_primary:
        store = get_object_store()
        if isinstance(store, S3ObjectStore):
            with _stores_lock:
                cache_key = ("primary", store.bucket)
                if cache_key not in _stores:
                    _stores[cache_key] = _RegionS3Store(store.storage)
                return _stores[cache_key]
        return store
    if region.local_path:
        root = Path(region.local_path)
        if not root.is_absolute():
            root = Path(settings.BASE_DIR) / root
        return LocalObjectStore(FileSystemStorage(location=root), name=region.code)
    if not region.bucket:
        raise InvalidInput(f"Region {region.code} has neither a bucket nor a local folder.")
    missing = region_missing_credentials(region)
    if missing:
        raise StorageUnavailable(
            f"Region {region.code}: the environment variable(s) {', '.join(missing)} "
            "holding its credentials are not set on this worker."
        )
    access = os.environ.get(region.access_key_env) if region.access_key_env else None
    secret = os.environ.get(region.secret_key_env) if region.secret_key_env else None
    # A boto3 client costs a few hundred milliseconds to build (it parses the service
    # model): keep one per region configuration and credentials, in this process.
    cache_key = (
        region.code,
        region.endpoint_url,
        region.bucket,
        region.s3_region_name,
        region.addressing_style,
        access,
        hashlib.sha256((secret or "").encode()).hexdigest(),
    )
    with _stores_lock:
        store = _stores.get(cache_key)
        if store is None:
            store = _stores[cache_key] = _s3_store(region, access, secret)
    return store


def _s3_store(region: Region, access: str | None, secret: str | None) -> S3ObjectStore:
    from storages.backends.s3 import S3Storage

    storage = S3Storage(
        bucket_name=region.bucket,
        endpoint_url=region.endpoint_url or None,
        region_name=region.s3_region_name or None,
        access_key=access,
        secret_key=secret,
        default_acl=None,
        querystring_auth=True,
        file_overwrite=True,
        client_config=boto_client_config(region.addressing_style),
    )
    return _RegionS3Store(storage)


class _RegionS3Store(S3ObjectStore):
    """An S3 store with one client for all threads. django-storages keeps a connection
    per thread, and the copy engine uploads from a fresh thread each time; boto3 clients
    are thread-safe, so one built once serves them all."""

    def __init__(self, storage) -> None:
        super().__init__(storage)
        self._client = storage.connection.meta.client

    @property
    def client(self):
        return self._client


def _endpoint_of(store: ObjectStore) -> tuple | None:
    """What makes two S3 stores reachable by one server-side copy: the endpoint and the
    credentials the client signs with."""
    if not isinstance(store, S3ObjectStore):
        return None
    client = store.client
    credentials = client._request_signer._credentials
    return (client.meta.endpoint_url, credentials.access_key if credentials else None)


def same_endpoint(source: ObjectStore, target: ObjectStore) -> bool:
    a, b = _endpoint_of(source), _endpoint_of(target)
    return a is not None and a == b


class _MeteredReader:
    """Reads the source in slices, waiting for each slice's slot on the link when the
    copy is throttled, hashing and counting every byte."""

    def __init__(
        self, body: IO[bytes], *, link: str, mbps: int | None, stop: threading.Event
    ) -> None:
        self.body, self.link, self.mbps, self.stop = body, link, mbps, stop
        self._digest = hashlib.sha256()
        # SHA-256 runs in a thread of its own (hashlib releases the GIL), in order, so
        # hashing overlaps reading instead of adding to it.
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self.count = 0
        self.slice = settings.REPLICATION_THROTTLE_CHUNK_BYTES
        self.first_read: float | None = None
        self.last_read: float | None = None

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for a negative size), short only at the
        end: uploaders take a short read for the end of the stream."""
        parts = []
        wanted = -1 if size is None or size < 0 else size
        while wanted != 0:
            if self.stop.is_set():
                raise LeaseLost("The lease on this replica was lost.")
            step = self.slice if wanted < 0 else min(wanted, self.slice)
            if self.mbps is not None:
                # Wait for this slice's slot on the link, then read it within the slot.
                wait = throttle_wait(link=self.link, mbps=self.mbps, amount=step)
                if wait > 0:
                    self.stop.wait(wait)
                if self.stop.is_set():
                    raise LeaseLost("The lease on this replica was lost.")
            if self.first_read is None:
                self.first_read = time.time()
            data = self.body.read(step if self.mbps is not None or wanted < 0 else wanted)
            if not data:
                break
            self._hasher.submit(self._digest.update, data)
            self.count += len(data)
            self.last_read = time.time()
            parts.append(data)
            if wanted > 0:
                wanted -= len(data)
        return b"".join(parts)

    def hexdigest(self) -> str:
        """The SHA-256 of everything read (waits for the hashing to catch up)."""
        self._hasher.shutdown(wait=True)
        return self._digest.hexdigest()

    def close(self) -> None:
        self._hasher.shutdown(wait=False, cancel_futures=True)


_MAX_PARTS = 10_000
_MD5_HEX = 32


def _part_size(size: int) -> int:
    """REPLICATION_PART_BYTES, or larger when the object would need more than S3's
    10,000 parts."""
    return max(settings.REPLICATION_PART_BYTES, -(-size // _MAX_PARTS))


def _staging_prefix(key: str, replica_id: int) -> str:
    org = key.split("/", 1)[0]
    return f"{org}/replication-staging/{replica_id}/"


def staging_clean(store: ObjectStore, *, key: str, replica_id: int) -> None:
    """Removes what earlier attempts of this replica left in the target: staged
    objects, and unfinished multipart uploads to the staging area or the final key (a
    killed worker's, or one a cut connection left behind)."""
    prefix = _staging_prefix(key, replica_id)
    if isinstance(store, S3ObjectStore):
        with store._errors(prefix):
            client = store.client
            for where in (prefix, key):
                uploads = client.list_multipart_uploads(Bucket=store.bucket, Prefix=where)
                for upload in uploads.get("Uploads", []):
                    if where == key and upload["Key"] != key:
                        continue
                    client.abort_multipart_upload(
                        Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
            listed = client.list_objects_v2(Bucket=store.bucket, Prefix=prefix)
            for item in listed.get("Contents", []):
                client.delete_object(Bucket=store.bucket, Key=item["Key"])
    elif isinstance(store, LocalObjectStore):
        folder = store.root / prefix
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _server_side_copy(source: S3ObjectStore, target: S3ObjectStore, key: str, staging: str):
    from boto3.s3.transfer import TransferConfig

    size = source.size(key)
    with target._errors(staging):
        if size <= _SINGLE_COPY_LIMIT:
            target.client.copy_object(
                Bucket=target.bucket, Key=staging, CopySource={"Bucket": source.bucket, "Key": key}
            )
        else:
            config = TransferConfig(
                multipart_threshold=_SINGLE_COPY_LIMIT, multipart_chunksize=1024**3
            )
            target.client.copy(
                {"Bucket": source.bucket, "Key": key}, target.bucket, staging, Config=config
            )
    return size


class _MultipartUpload:
    """Streams a reader into a multipart upload of `key`, parts in parallel; the object
    appears only at `complete()`, and `abort()` leaves nothing behind."""

    def __init__(self, store: S3ObjectStore, key: str, *, content_type: str) -> None:
        self.store, self.key = store, key
        self.client, self.bucket = store.client, store.bucket
        with store._errors(key):
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )["UploadId"]
        self.parts: list[dict] = []
        self.md5s: list[bytes] = []

    def _put(self, number: int, data: bytes) -> dict:
        import base64

        # Hashed here, in the pool, so the reader never stalls the link for it.
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        with self.store._errors(self.key):
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(md5).decode(),
            )
        etag = response["ETag"].strip('"')
        if len(etag) == _MD5_HEX and etag != md5.hex():
            raise ChecksumMismatch(f"Part {number} of {self.key!r} landed with other bytes.")
        return {"PartNumber": number, "ETag": response["ETag"], "md5": md5}

    def send(self, reader: _MeteredReader, *, part_size: int, on_bytes) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        concurrency = settings.REPLICATION_UPLOAD_CONCURRENCY
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            running: set = set()
            done: list = []
            number = 0
            while True:
                data = reader.read(part_size)
                if not data and number:
                    break
                number += 1
                running.add(pool.submit(self._put, number, data))
                if on_bytes:
                    on_bytes(reader.count)
                if len(running) >= concurrency:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    done += [f.result() for f in finished]
                if len(data) < part_size:
                    break
            finished, _ = wait(running)
            done += [f.result() for f in finished]
        done.sort(key=lambda p: p["PartNumber"])
        self.md5s = [p.pop("md5") for p in done]
        self.parts = done

    def expected_etag(self) -> str:
        joined = hashlib.md5(b"".join(self.md5s), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self.md5s)}"

    def complete(self) -> dict:
        with self.store._errors(self.key):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
            return self.client.head_object(Bucket=self.bucket, Key=self.key)

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the next attempt aborts what is left
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )


def _run_guarded(work: Callable[[], None], *, heartbeat: Callable[[], bool], stop) -> None:
    """Runs `work` in a thread while this thread keeps the lease (every third of it);
    a lost lease sets `stop`, which the reader turns into LeaseLost."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="replication-copy", daemon=True)
    thread.start()
    interval = max(1.0, settings.REPLICATION_LEASE_SECONDS / 3)
    while thread.is_alive():
        thread.join(interval)
        if thread.is_alive() and not heartbeat():
            stop.set()
            thread.join()
            raise LeaseLost("The lease on this replica was lost.")
    if failure:
        raise failure[0]


def _lease_check(heartbeat: Callable[[], bool]) -> None:
    if not heartbeat():
        raise LeaseLost("The lease on this replica was lost.")


def _mismatch(key: str, landed: str, expected: str) -> ChecksumMismatch:
    return ChecksumMismatch(
        f"The copy of {key!r} hashed to {landed[:12] or 'nothing'}… on the target, not the "
        f"version's {expected[:12]}…; it will be copied again."
    )


def copy_object(
    *,
    source: ObjectStore,
    target: ObjectStore,
    key: str,
    replica_id: int,
    attempt: int,
    expected_sha256: str,
    content_type: str,
    link: str,
    mbps: int | None,
    heartbeat: Callable[[], bool],
    on_bytes: Callable[[int], None] | None = None,
) -> CopyResult:
    """Copies `key` from `source` to `target` and returns what moved; the object is at
    `key` in the target, proven to be the version's bytes, when this returns.

    Raises LeaseLost when `heartbeat()` says the replica is no longer ours (nothing is
    made visible then), ChecksumMismatch when the bytes are not the version's, and
    StorageUnavailable (or NotFound for a missing source) from the stores.
    """
    started = time.monotonic()
    size = source.size(key)
    staging_clean(target, key=key, replica_id=replica_id)
    staging = f"{_staging_prefix(key, replica_id)}{attempt}"
    stop = threading.Event()
    if same_endpoint(source, target):
        _run_guarded(
            lambda: _server_side_copy(source, target, key, staging), heartbeat=heartbeat, stop=stop
        )
        return _promote_checked(
            target,
            key,
            staging,
            expected_sha256,
            heartbeat,
            started,
            replica_id,
            method="server-side",
            transferred=0,
            reader=None,
        )
    body = source.open(key)
    reader = _MeteredReader(body, link=link, mbps=mbps, stop=stop)
    try:
        return _stream_copy(
            target=target,
            key=key,
            staging=staging,
            reader=reader,
            body=body,
            size=size,
            expected_sha256=expected_sha256,
            content_type=content_type,
            heartbeat=heartbeat,
            on_bytes=on_bytes,
            stop=stop,
            started=started,
            replica_id=replica_id,
        )
    finally:
        reader.close()


def _stream_copy(
    *,
    target: ObjectStore,
    key: str,
    staging: str,
    reader: _MeteredReader,
    body,
    size: int,
    expected_sha256: str,
    content_type: str,
    heartbeat: Callable[[], bool],
    on_bytes,
    stop: threading.Event,
    started: float,
    replica_id: int,
) -> CopyResult:
    if isinstance(target, S3ObjectStore):
        upload = _MultipartUpload(target, key, content_type=content_type)

        def work() -> None:
            try:
                upload.send(reader, part_size=_part_size(size), on_bytes=on_bytes)
            finally:
                body.close()

        try:
            _run_guarded(work, heartbeat=heartbeat, stop=stop)
            streamed = reader.hexdigest()
            if streamed != expected_sha256 or reader.count != size:
                raise _mismatch(key, streamed, expected_sha256)
            _lease_check(heartbeat)
        except BaseException:
            upload.abort()
            raise
        head = upload.complete()
        etag = head.get("ETag", "").strip('"')
        if head.get("ContentLength") != size or (
            len(etag.split("-")[0]) == _MD5_HEX and etag != upload.expected_etag()
        ):
            # Completed but not what was sent (a server fault): never leave it there.
            with contextlib.suppress(Exception):
                target.delete(key)
            raise _mismatch(key, "", expected_sha256)
        return CopyResult(
            bytes_transferred=reader.count,
            sha256=streamed,
            method="stream",
            seconds=time.monotonic() - started,
            stream_started_at=reader.first_read,
            stream_ended_at=reader.last_read,
            verified_by="content-md5",
        )

    def write() -> None:
        try:
            target.write(staging, reader, content_type=content_type, on_progress=on_bytes)
        finally:
            body.close()

    try:
        _run_guarded(write, heartbeat=heartbeat, stop=stop)
    except BaseException:
        _quietly_clean(target, key=key, replica_id=replica_id)
        raise
    return _promote_checked(
        target,
        key,
        staging,
        expected_sha256,
        heartbeat,
        started,
        replica_id,
        method="stream",
        transferred=reader.count,
        reader=reader,
    )


def _promote_checked(
    target,
    key,
    staging,
    expected_sha256,
    heartbeat,
    started,
    replica_id,
    *,
    method: str,
    transferred: int,
    reader: _MeteredReader | None,
) -> CopyResult:
    """Reads the staged object back, hashes it, and promotes it to `key` if it is the
    version's; the staging area is emptied either way."""
    try:
        _lease_check(heartbeat)
        landed = sha256_of(target, staging)
        streamed = reader.hexdigest() if reader else landed
        if landed != expected_sha256 or streamed != expected_sha256:
            raise _mismatch(key, landed, expected_sha256)
        target.copy(staging, key)
    finally:
        _quietly_clean(target, key=key, replica_id=replica_id)
    return CopyResult(
        bytes_transferred=transferred,
        sha256=landed,
        method=method,
        seconds=time.monotonic() - started,
        stream_started_at=reader.first_read if reader else None,
        stream_ended_at=reader.last_read if reader else None,
        verified_by="read-back",
    )


def _quietly_clean(store: ObjectStore, *, key: str, replica_id: int) -> None:
    # Best effort: the next attempt cleans again.
    with contextlib.suppress(Exception):
        staging_clean(store, key=key, replica_id=replica_id)
