"""The copy engine: the one place that moves a version's bytes between regions.

A copy lands at a staging key in the target and is promoted to the version's key only
after the bytes that landed were read back and hashed to the version's SHA-256, so the
final key never holds a partial or wrong object, whatever fails on the way:

1. Clean up what an earlier attempt of this replica left in the target's staging area
   (a killed worker's object, its unfinished multipart uploads).
2. Copy to the staging key: server-side (one CopyObject, or a multipart copy past 5
   GiB) when source and target are buckets on the same endpoint with the same
   credentials; otherwise streamed from the source into the target (multipart above
   `REPLICATION_PART_BYTES`), hashing as it streams and paced by the link's bandwidth
   limit (`replication.throttle`). The upload runs in a thread; the calling thread
   keeps the replica's lease alive and stops the copy as soon as the lease is lost.
3. Read the staged object back and hash it; promote it (a server-side copy inside the
   target, a hard link on local disk); delete the staging key.

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
    """Reads the source in slices, hashing every byte, counting them, and waiting for
    the link's bandwidth before passing each slice on."""

    def __init__(
        self,
        body: IO[bytes],
        *,
        link: str,
        mbps: int | None,
        stop: threading.Event,
    ) -> None:
        self.body, self.link, self.mbps, self.stop = body, link, mbps, stop
        self.digest = hashlib.sha256()
        self.count = 0
        self.slice = settings.REPLICATION_THROTTLE_CHUNK_BYTES

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for a negative size), short only at the
        end: uploaders take a short read for the end of the stream."""
        parts = []
        wanted = -1 if size is None or size < 0 else size
        while wanted != 0:
            if self.stop.is_set():
                raise LeaseLost("The lease on this replica was lost.")
            step = self.slice if wanted < 0 else min(wanted, self.slice)
            data = self.body.read(step if self.mbps is not None or wanted < 0 else wanted)
            if not data:
                break
            if self.mbps is not None:
                wait = throttle_wait(link=self.link, mbps=self.mbps, amount=len(data))
                if wait > 0:
                    self.stop.wait(wait)
            self.digest.update(data)
            self.count += len(data)
            parts.append(data)
            if wanted > 0:
                wanted -= len(data)
        return b"".join(parts)


def _staging_prefix(key: str, replica_id: int) -> str:
    org = key.split("/", 1)[0]
    return f"{org}/replication-staging/{replica_id}/"


def staging_clean(store: ObjectStore, *, key: str, replica_id: int) -> None:
    """Removes what earlier attempts of this replica left in the target: staged
    objects and unfinished multipart uploads (a killed worker's, or one a cut
    connection left behind)."""
    prefix = _staging_prefix(key, replica_id)
    if isinstance(store, S3ObjectStore):
        with store._errors(prefix):
            client = store.client
            uploads = client.list_multipart_uploads(Bucket=store.bucket, Prefix=prefix)
            for upload in uploads.get("Uploads", []):
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
    `key` in the target, hashed to `expected_sha256`, when this returns.

    Raises LeaseLost when `heartbeat()` says the replica is no longer ours (nothing is
    promoted then), ChecksumMismatch when the landed bytes are not the version's, and
    StorageUnavailable (or NotFound for a missing source) from the stores.
    """
    started = time.monotonic()
    staging_clean(target, key=key, replica_id=replica_id)
    staging = f"{_staging_prefix(key, replica_id)}{attempt}"
    stop = threading.Event()
    if same_endpoint(source, target):
        method = "server-side"
        moved: list[int] = []

        def work() -> None:
            moved.append(_server_side_copy(source, target, key, staging))

        _run_guarded(work, heartbeat=heartbeat, stop=stop)
        transferred = 0  # the bytes never left the storage service
        streamed_sha = ""
    else:
        method = "stream"
        body = source.open(key)
        reader = _MeteredReader(body, link=link, mbps=mbps, stop=stop)
        if isinstance(target, S3ObjectStore | LocalObjectStore):
            target.chunk_size = settings.REPLICATION_PART_BYTES

        def work() -> None:
            try:
                target.write(
                    staging,
                    reader,
                    content_type=content_type,
                    on_progress=on_bytes,
                )
            finally:
                body.close()

        try:
            _run_guarded(work, heartbeat=heartbeat, stop=stop)
        except BaseException:
            _quietly_clean(target, key=key, replica_id=replica_id)
            raise
        transferred = reader.count
        streamed_sha = reader.digest.hexdigest()
    if not heartbeat():
        _quietly_clean(target, key=key, replica_id=replica_id)
        raise LeaseLost("The lease on this replica was lost.")
    landed = sha256_of(target, staging)
    if landed != expected_sha256 or (streamed_sha and streamed_sha != expected_sha256):
        _quietly_clean(target, key=key, replica_id=replica_id)
        raise ChecksumMismatch(
            f"The copy of {key!r} hashed to {landed[:12]}… on the target, not the "
            f"version's {expected_sha256[:12]}…; it will be copied again."
        )
    target.copy(staging, key)
    _quietly_clean(target, key=key, replica_id=replica_id)
    return CopyResult(
        bytes_transferred=transferred,
        sha256=landed,
        method=method,
        seconds=time.monotonic() - started,
    )


def _quietly_clean(store: ObjectStore, *, key: str, replica_id: int) -> None:
    # Best effort: the next attempt cleans again.
    with contextlib.suppress(Exception):
        staging_clean(store, key=key, replica_id=replica_id)
