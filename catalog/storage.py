"""Object storage: the one place that talks to the bucket.

Two implementations of one small interface: local files (the embedded mode, under
./var/objects) and S3-compatible storage (django-storages' S3Storage for configuration
and connection, boto3 for the streaming calls it does not offer). Everything else in the
project goes through `get_object_store()`.

Rules both keep:
- writes stream in chunks and appear atomically: nobody ever sees half an object at a key;
- `open()` streams, it never buffers a whole object;
- `copy_immutable()` refuses to put other bytes at a key that already holds an object.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, BinaryIO, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.utils.crypto import constant_time_compare, salted_hmac

from catalog.exceptions import Conflict, NotFound, StorageUnavailable

ProgressCallback = Callable[[int], None]

_SINGLE_COPY_LIMIT = 5 * 1024**3
_SIGNING_SALT = "catalog.storage.signed-download"


class ObjectStore(Protocol):
    def write(
        self,
        key: str,
        stream: IO[bytes],
        *,
        content_type: str = "application/octet-stream",
        on_progress: ProgressCallback | None = None,
    ) -> int: ...
    def open(self, key: str) -> BinaryIO: ...
    def copy(self, source: str, destination: str, *, size: int | None = None) -> None: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def signed_url(
        self, key: str, *, ttl: int, filename: str | None = None, version: str = ""
    ) -> SignedUrl: ...
    def abandoned_uploads_abort(self, *, older_than: timedelta) -> int: ...


@dataclass(frozen=True)
class SignedUrl:
    """A download URL and the moment it stops working, as the signer set it."""

    url: str
    expires_at: datetime


def _chunks(stream: IO[bytes], chunk_size: int) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


class LocalObjectStore:
    """Objects as files below a folder; signed URLs served and checked by the app."""

    def __init__(self, storage: FileSystemStorage, *, name: str = "") -> None:
        self.root = Path(storage.location)
        self.chunk_size = settings.STREAM_CHUNK_BYTES
        # Empty for the primary folder; another folder's name (a region's) travels in
        # its signed URLs so the download view serves it from there.
        self.name = name

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise NotFound(f"Object key {key!r} is outside the storage root.")
        return path

    def write(self, key, stream, *, content_type="application/octet-stream", on_progress=None):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        # Write beside the target and rename: the key holds the whole object or nothing.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(stream, self.chunk_size):
                    out.write(chunk)
                    written += len(chunk)
                    if on_progress:
                        on_progress(written)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def open(self, key):
        try:
            return open(self._path(key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise NotFound(f"No object at {key!r}.") from None

    def copy(self, source, destination, *, size=None):
        src = self._path(source)
        if not src.exists():
            raise NotFound(f"No object at {source!r}.")
        dst = self._path(destination)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".incoming-{uuid.uuid4().hex}"
        try:
            try:
                # A hard link shares the bytes without copying them. Safe because no key
                # is ever changed in place: every write makes a new file and renames it.
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self, key):
        self._path(key).unlink(missing_ok=True)

    def exists(self, key):
        return self._path(key).is_file()

    def size(self, key):
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"No object at {key!r}.") from None

    def read_range(self, key, start, length):
        with self.open(key) as handle:
            handle.seek(start)
            return handle.read(length)

    def abandoned_uploads_abort(self, *, older_than: timedelta) -> int:
        """Removes the temporary files of writes that never finished (the process was
        killed mid-write) and were last touched more than `older_than` ago."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        if not self.root.exists():
            return 0
        for path in self.root.rglob(".incoming-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def path(self, key: str) -> Path:
        """The file behind a key, for the embedded download view."""
        return self._path(key)

    def signed_url(self, key, *, ttl, filename=None, version=""):
        expires = int(time.time()) + ttl
        query = {"expires": expires}
        if version:
            query["version"] = version
        if self.name:
            query["store"] = self.name
        query["signature"] = download_signature(key, expires, version, store=self.name)
        return SignedUrl(
            url=f"{settings.PUBLIC_BASE_URL.rstrip('/')}/objects/{quote(key)}?{urlencode(query)}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )


def download_signature(key: str, expires: int, version: str = "", *, store: str = "") -> str:
    """HMAC over the key, the version, the expiry time and the store (when not the
    primary's), keyed by SECRET_KEY."""
    message = f"{key}\n{version}\n{expires}" + (f"\n{store}" if store else "")
    return salted_hmac(_SIGNING_SALT, message, algorithm="sha256").hexdigest()


def verify_download_signature(
    key: str, expires: str, signature: str, version: str = "", *, store: str = ""
) -> bool:
    """True when the signature is this key's, version's and store's and has not expired
    (checked in constant time)."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    expected = download_signature(key, expires_at, version or "", store=store or "")
    return constant_time_compare(expected, signature or "") and expires_at >= time.time()


class _S3Reader:
    """A streaming S3 object body whose network failures are StorageUnavailable."""

    def __init__(self, body, key: str, errors) -> None:
        self._body, self._key, self._errors = body, key, errors

    def read(self, size: int = -1) -> bytes:
        from urllib3.exceptions import HTTPError

        with self._errors(self._key):
            try:
                return self._body.read(None if size is None or size < 0 else size)
            except (HTTPError, OSError) as err:
                raise StorageUnavailable(f"Reading {self._key!r} from storage failed.") from err

    def close(self) -> None:
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_CLIENT_LOCK = threading.Lock()


class S3ObjectStore:
    """Objects in an S3-compatible bucket; signed URLs are S3 presigned GETs."""

    def __init__(self, storage) -> None:
        self.storage = storage
        self.bucket = storage.bucket_name
        self.chunk_size = settings.STREAM_CHUNK_BYTES

    @property
    def client(self):
        # One client for every thread of the process: botocore's clients are thread-safe,
        # and building one costs 0.1-0.25 s of CPU (loading the service model), which
        # django-storages (a resource per thread) made every new web thread pay on its
        # first upload. Kept on the storage, so a changed STORAGES setting gets its own.
        client = getattr(self.storage, "_shared_client", None)
        if client is None:
            with _CLIENT_LOCK:
                client = getattr(self.storage, "_shared_client", None)
                if client is None:
                    client = self.storage.connection.meta.client
                    self.storage._shared_client = client
        return client

    @contextmanager
    def _errors(self, key: str):
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except S3UploadFailedError as err:
            raise StorageUnavailable(f"Storage failed while writing {key!r}.") from err
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = err.response.get("Error", {}).get("Code")
            if status == 404 or code in {"NoSuchKey", "404", "NotFound"}:
                raise NotFound(f"No object at {key!r}.") from None
            raise StorageUnavailable(f"Storage refused the request for {key!r}: {code}.") from err
        except BotoCoreError as err:
            raise StorageUnavailable(f"Storage could not be reached: {err}.") from err

    def write(self, key, stream, *, content_type="application/octet-stream", on_progress=None):
        from boto3.s3.transfer import TransferConfig

        written = 0

        def progress(n: int) -> None:
            nonlocal written
            written += n
            if on_progress:
                on_progress(written)

        config = TransferConfig(
            multipart_threshold=self.chunk_size, multipart_chunksize=self.chunk_size
        )
        # A multipart upload becomes visible only when it completes: never half an object.
        with self._errors(key):
            self.client.upload_fileobj(
                stream,
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=config,
                Callback=progress,
            )
        return written

    def open(self, key):
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return _S3Reader(body, key, self._errors)

    def copy(self, source, destination, *, size=None):
        """Server-side copy: one CopyObject up to S3's 5 GiB limit for it (a multipart copy
        of small parts costs a request, and on some servers a full read, per part), large
        parts beyond. `size`, when the caller knows it, saves asking for it."""
        from boto3.s3.transfer import TransferConfig

        if size is None:
            size = self.size(source)
        with self._errors(source):
            if size <= _SINGLE_COPY_LIMIT:
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=destination,
                    CopySource={"Bucket": self.bucket, "Key": source},
                )
                return
            config = TransferConfig(
                multipart_threshold=_SINGLE_COPY_LIMIT, multipart_chunksize=1024**3
            )
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, destination, Config=config
            )

    def delete(self, key):
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def exists(self, key):
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key):
        with self._errors(key):
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]

    def read_range(self, key, start, length):
        if length <= 0:
            return b""
        with self._errors(key):
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            return response["Body"].read()

    def signed_url(self, key, *, ttl, filename=None, version=""):
        # The key names the version already: one presigned GET is for exactly one key.
        params = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        with self._errors(key):
            url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
        # SigV4 signs the second it was made (X-Amz-Date); the URL works `ttl` after it.
        signed_at = parse_qs(urlsplit(url).query).get("X-Amz-Date", [""])[0]
        try:
            start = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            start = datetime.now(UTC).replace(microsecond=0)
        return SignedUrl(url=url, expires_at=start + timedelta(seconds=ttl))

    def abandoned_uploads_abort(self, *, older_than: timedelta) -> int:
        """Aborts the bucket's multipart uploads started more than `older_than` ago and
        never completed: their parts are stored (and billed) but belong to no object.
        boto3 aborts a failed upload itself when it can; this catches those whose abort
        could not get through and those of processes killed mid-upload."""
        from botocore.exceptions import ClientError

        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        with self._errors(self.bucket):
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] >= cutoff:
                        continue
                    try:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except ClientError as err:
                        if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                        continue  # completed or aborted meanwhile
                    aborted += 1
        return aborted


def get_object_store() -> ObjectStore:
    storage = storages["datasets"]
    if isinstance(storage, FileSystemStorage):
        return LocalObjectStore(storage)
    return S3ObjectStore(storage)


def uploads_abandoned_abort() -> int:
    """Aborts uploads to the primary storage left unfinished for longer than
    MULTIPART_ABANDON_HOURS (a web or worker process killed mid-upload, an abort that
    could not get through); returns how many."""
    return get_object_store().abandoned_uploads_abort(
        older_than=timedelta(hours=settings.MULTIPART_ABANDON_HOURS)
    )


def sha256_of(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open(key) as stream:
        for chunk in _chunks(stream, settings.STREAM_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def copy_immutable(
    store: ObjectStore, source: str, destination: str, *, sha256: str, size: int | None = None
) -> None:
    """Copies `source` to `destination`, a key that must never change once written.

    If `destination` already holds the same bytes (a re-run of the same publish), this
    is a no-op; if it holds other bytes, Conflict is raised and nothing is written.
    `size`, the source's when the caller knows it, saves a request.
    """
    if store.exists(destination):
        if sha256_of(store, destination) == sha256:
            return
        raise Conflict(
            f"The key {destination!r} already holds other bytes; published objects "
            "are never overwritten."
        )
    store.copy(source, destination, size=size)
