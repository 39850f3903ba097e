"""Object storage: the one place that talks to the bucket.

Two implementations of one small interface: local files (the embedded mode, under
./var/objects) and S3-compatible storage (django-storages' S3Storage for configuration
and connection, boto3 for the streaming calls it does not offer). Everything else in the
project goes through `get_object_store()`.

Rules both keep:
- writes stream in chunks and appear atomically: nobody ever sees half an object at a key;
  `write(..., if_absent=True)` refuses (Conflict) to replace an object already at the key;
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
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, BinaryIO, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.utils.crypto import constant_time_compare, salted_hmac

from catalog.digests import DigestMismatch, crc32_of
from catalog.exceptions import Conflict, InvalidInput, NotFound, StorageUnavailable
from catalog.multipart import (
    LOCAL_PART_PATH,
    MULTIPART_DIR,
    JoinedFiles,
    UploadedPart,
    part_signature,
)
from catalog.signing import signer_for

ProgressCallback = Callable[[int], None]

_SINGLE_COPY_LIMIT = 5 * 1024**3
# S3's bounds for a multipart upload: parts of 5 MiB or more (but the last), 10,000 parts.
_MIN_PART_BYTES = 5 * 1024 * 1024
_MAX_PARTS = 10_000
# Parts of one write in flight at once, as boto3's transfer manager does (it keeps 10):
# a single stream of PUTs leaves the connection idle while each part's answer comes back.
_UPLOAD_CONCURRENCY = 8
_SIGNING_SALT = "catalog.storage.signed-download"
# The checksum every write sends with each request (botocore computes it in C).
_CHECKSUM = "CRC32"


class ObjectStore(Protocol):
    def write(
        self,
        key: str,
        stream: IO[bytes],
        *,
        content_type: str = "application/octet-stream",
        on_progress: ProgressCallback | None = None,
        if_absent: bool = False,
        parts_in_flight: int | None = None,
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


def _read_full(stream: IO[bytes], size: int) -> bytes:
    """Exactly `size` bytes, or fewer only at the end of the stream (sockets and upload
    wrappers return less than asked)."""
    parts = []
    wanted = size
    while wanted > 0:
        part = stream.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _key_taken(key: str) -> Conflict:
    return Conflict(
        f"The key {key!r} already holds an object; published objects are never overwritten."
    )


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

    def write(
        self,
        key,
        stream,
        *,
        content_type="application/octet-stream",
        on_progress=None,
        if_absent=False,
        parts_in_flight=None,
    ):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if if_absent and path.exists():
            raise _key_taken(key)
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
            if if_absent:
                # A link fails when the name exists: no check-then-rename race.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise _key_taken(key) from None
                Path(tmp).unlink()
            else:
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

    # --- Multipart uploads (resumable uploads): parts as files, assembled on completion.

    def _parts_dir(self, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise NotFound(f"No upload {upload_id!r}.")
        return self.root / MULTIPART_DIR / upload_id

    def multipart_begin(self, key: str, *, content_type: str, crc32: bool = False) -> str:
        self._path(key)  # refuses a key outside the root before anything exists
        upload_id = uuid.uuid4().hex
        self._parts_dir(upload_id).mkdir(parents=True)
        return upload_id

    def multipart_part_url(
        self, key: str, upload_id: str, number: int, *, length: int, ttl: int, crc32: str = ""
    ) -> SignedUrl:
        expires = int(time.time()) + ttl
        query: dict[str, str | int] = {"length": length, "expires": expires}
        if crc32:
            query["crc32"] = crc32
        query["signature"] = part_signature(key, upload_id, number, length, expires, crc32)
        path = LOCAL_PART_PATH.format(upload_id=upload_id, number=number)
        return SignedUrl(
            url=f"{settings.PUBLIC_BASE_URL.rstrip('/')}{path}?{urlencode(query)}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def multipart_part_write(
        self, upload_id: str, number: int, stream: IO[bytes], *, length: int, crc32: str = ""
    ) -> UploadedPart:
        """Writes one part from `stream`, which must hold exactly `length` bytes (a
        shorter or longer body raises InvalidInput and leaves the part as it was) and,
        when `crc32` is given, have that CRC32 (else DigestMismatch, as S3 refuses a part
        whose checksum header does not match). A part sent again replaces the one
        before, as in S3."""
        folder = self._parts_dir(upload_id)
        if not folder.is_dir():
            raise NotFound("No such upload: it was completed or aborted.")
        digest = hashlib.md5(usedforsecurity=False)
        checksum = 0
        written = 0
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                while written <= length and (chunk := stream.read(self.chunk_size)):
                    out.write(chunk)
                    digest.update(chunk)
                    checksum = zlib.crc32(chunk, checksum)
                    written += len(chunk)
            if written != length:
                raise InvalidInput(
                    f"Part {number} must be exactly {length:,} bytes; "
                    f"{'more' if written > length else f'{written:,}'} arrived.",
                    details={"part_number": number, "expected_size": length},
                )
            actual = crc32_of(checksum)
            if crc32 and actual != crc32:
                raise DigestMismatch(
                    f"Part {number} arrived with the CRC32 {actual}, not the {crc32} it was "
                    "sent with: the bytes changed on the way. Send the part again.",
                    details={"part_number": number, "expected_crc32": crc32, "crc32": actual},
                )
            etag = digest.hexdigest()
            for old in folder.glob(f"{number:05d}.*"):
                old.unlink(missing_ok=True)
            # The name keeps the part's ETag and CRC32, as ListParts reports them.
            os.replace(tmp, folder / f"{number:05d}.{etag}.{checksum:08x}")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return UploadedPart(number=number, size=written, etag=f'"{etag}"', crc32=actual)

    def multipart_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        folder = self._parts_dir(upload_id)
        if not folder.is_dir():
            raise NotFound("No such upload: it was completed or aborted.")
        parts = []
        for path in folder.iterdir():
            number, _, rest = path.name.partition(".")
            etag, _, crc = rest.partition(".")
            if number.isdigit():
                parts.append(
                    UploadedPart(
                        number=int(number),
                        size=path.stat().st_size,
                        etag=f'"{etag}"',
                        crc32=crc32_of(int(crc, 16)) if crc else "",
                    )
                )
        return sorted(parts, key=lambda part: part.number)

    def multipart_complete(
        self,
        key: str,
        upload_id: str,
        parts: list[UploadedPart],
        *,
        sha256: bool = False,
        if_absent: bool = False,
    ) -> str | None:
        """Joins the parts, in order, into the object at `key` in one streaming pass (the
        SHA-256 of the whole computed on the way when asked for, and returned), then
        removes them. With `if_absent`, an object already at `key` raises Conflict and
        the parts stay (abort them)."""
        folder = self._parts_dir(upload_id)
        files = {int(p.name.partition(".")[0]): p for p in folder.iterdir() if p.name[0].isdigit()}
        digest = hashlib.sha256() if sha256 else None

        self.write(
            key,
            JoinedFiles([files[part.number] for part in parts], digest),
            if_absent=if_absent,
        )
        shutil.rmtree(folder, ignore_errors=True)
        return digest.hexdigest() if digest is not None else None

    def multipart_abort(self, key: str, upload_id: str) -> None:
        shutil.rmtree(self._parts_dir(upload_id), ignore_errors=True)

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

    def write(
        self,
        key,
        stream,
        *,
        content_type="application/octet-stream",
        on_progress=None,
        if_absent=False,
        parts_in_flight=None,
    ):
        """Streams `stream` to `key`: one PUT for an object smaller than a part, else a
        multipart upload with `_UPLOAD_CONCURRENCY` parts in flight (parts are read here,
        in order, and sent from a thread pool). Every request carries the CRC32 of its
        body, so storage refuses a part that arrived other than it was read; the upload
        declares CRC32 as its checksum, as boto3's `upload_file` does, so that storage
        keeps one per part instead of computing one over the whole object when it joins
        them (moto's default, CRC64NVME of the full object, holds two more copies of it
        and made completing 1 GiB take several seconds longer). A multipart
        upload becomes visible only when it completes; when anything fails it is aborted
        (the hourly sweep aborts those whose abort could not get through). With
        `if_absent`, storage itself refuses to complete over an existing object
        (If-None-Match), which raises Conflict. `parts_in_flight` (default
        `_UPLOAD_CONCURRENCY`) bounds the memory a write holds, about that many parts."""
        part_size = max(self.chunk_size, _MIN_PART_BYTES)
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        client = self.client
        first = _read_full(stream, part_size)
        if len(first) < part_size:
            with self._write_errors(key):
                client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=first,
                    ContentType=content_type,
                    ChecksumAlgorithm=_CHECKSUM,
                    **extra,
                )
            if on_progress:
                on_progress(len(first))
            return len(first)
        with self._write_errors(key):
            upload_id = client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, ChecksumAlgorithm=_CHECKSUM
            )["UploadId"]
        try:
            with self._write_errors(key):
                parts, written = self._parts_send(
                    client,
                    key,
                    upload_id,
                    first,
                    stream,
                    part_size,
                    on_progress,
                    parts_in_flight or _UPLOAD_CONCURRENCY,
                )
                client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **extra,
                )
        except BaseException:
            with suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return written

    def _parts_send(
        self, client, key, upload_id, first, stream, part_size, on_progress, concurrency
    ):
        def send(number: int, body: bytes) -> dict:
            answer = client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm=_CHECKSUM,
            )
            return {
                "PartNumber": number,
                "ETag": answer["ETag"],
                "ChecksumCRC32": answer["ChecksumCRC32"],
            }

        parts: list[dict] = []
        written = 0
        sent = 0
        in_flight: deque[tuple[Future, int]] = deque()

        def collect_oldest() -> None:
            nonlocal sent
            future, length = in_flight.popleft()
            parts.append(future.result())
            sent += length
            if on_progress:
                on_progress(sent)

        pool = ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part")
        try:
            body, number = first, 1
            while body:
                in_flight.append((pool.submit(send, number, body), len(body)))
                written += len(body)
                if len(in_flight) >= concurrency:
                    collect_oldest()
                number += 1
                # Parts grow past the first thousands so that 10,000 cover any upload.
                size = part_size * (1 + number * 4 // _MAX_PARTS)
                body = _read_full(stream, size)
            while in_flight:
                collect_oldest()
        finally:
            for future, _length in in_flight:
                future.cancel()
            pool.shutdown(wait=True)
        return parts, written

    @contextmanager
    def _write_errors(self, key: str):
        from botocore.exceptions import ClientError

        try:
            with self._errors(key):
                yield
        except StorageUnavailable as err:
            cause = err.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in {
                "PreconditionFailed",
                "412",
            }:
                raise _key_taken(key) from None
            raise

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
        disposition = f'attachment; filename="{filename}"' if filename else None
        with self._errors(key):
            signer = signer_for(
                self.client,
                self.bucket,
                access_key=self.storage.access_key,
                secret_key=self.storage.secret_key,
                session_token=self.storage.security_token,
            )
        if signer is not None:
            # SigV4 signs the second it was made (X-Amz-Date); the URL works `ttl` after it.
            start = datetime.fromtimestamp(int(time.time()), UTC)
            url = signer.presign_get(key, expires_in=ttl, signed_at=start, disposition=disposition)
            return SignedUrl(url=url, expires_at=start + timedelta(seconds=ttl))
        params = {"Bucket": self.bucket, "Key": key}
        if disposition:
            params["ResponseContentDisposition"] = disposition
        with self._errors(key):
            url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
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

    # --- Multipart uploads (resumable uploads): presigned UploadPart URLs for clients.

    def multipart_begin(self, key: str, *, content_type: str, crc32: bool = False) -> str:
        """Begins a multipart upload at `key`. With `crc32`, the upload declares CRC32 as
        its checksum (COMPOSITE: storage keeps one per part, as boto3's `upload_file`
        does) and every part must then come with its own (`multipart_part_url`'s
        `crc32`); without, storage picks its default (AWS and moto: a CRC64NVME over the
        whole object, computed when the parts are joined)."""
        extra = {"ChecksumAlgorithm": "CRC32"} if crc32 else {}
        with self._errors(key):
            response = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, **extra
            )
        return response["UploadId"]

    def multipart_part_url(
        self, key: str, upload_id: str, number: int, *, length: int, ttl: int, crc32: str = ""
    ) -> SignedUrl:
        """A presigned UploadPart URL. With `crc32` (base64), `x-amz-checksum-crc32` is
        one of its signed headers: the PUT must carry exactly that value, so storage
        refuses a part whose bytes have another CRC32 (BadDigest) and any other value of
        the header (SignatureDoesNotMatch)."""
        # The length is not signed: some clients send parts chunked; sizes are checked
        # against ListParts at completion instead.
        params = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        if crc32:
            params["ChecksumCRC32"] = crc32
        start = datetime.now(UTC).replace(microsecond=0)
        with self._errors(key):
            url = self.client.generate_presigned_url("upload_part", Params=params, ExpiresIn=ttl)
        return SignedUrl(url=url, expires_at=start + timedelta(seconds=ttl))

    def multipart_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        from botocore.exceptions import ClientError

        parts = []
        try:
            with self._errors(key):
                paginator = self.client.get_paginator("list_parts")
                for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                    for part in page.get("Parts", []):
                        parts.append(
                            UploadedPart(
                                number=part["PartNumber"],
                                size=part["Size"],
                                etag=part["ETag"],
                                crc32=part.get("ChecksumCRC32", ""),
                            )
                        )
        except NotFound:
            raise NotFound("No such upload: it was completed or aborted.") from None
        except StorageUnavailable as err:
            cause = err.__cause__
            if isinstance(cause, ClientError) and "NoSuchUpload" in str(cause):
                raise NotFound("No such upload: it was completed or aborted.") from None
            raise
        return sorted(parts, key=lambda part: part.number)

    def multipart_complete(
        self,
        key: str,
        upload_id: str,
        parts: list[UploadedPart],
        *,
        sha256: bool = False,
        if_absent: bool = False,
    ) -> str | None:
        """Completes the upload at `key` (S3 joins the parts itself, no bytes move),
        naming each part's CRC32 when storage listed one (an upload that declared CRC32
        must: AWS refuses a completion that leaves one out). With `if_absent`, storage
        refuses to complete over an object already at `key` (If-None-Match): Conflict,
        and the upload stays open (abort it). Returns None: the SHA-256, when needed, is
        read back by the caller."""
        listed = [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
        for entry, part in zip(listed, parts, strict=True):
            if part.crc32:
                entry["ChecksumCRC32"] = part.crc32
        with self._write_errors(key):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
                **({"IfNoneMatch": "*"} if if_absent else {}),
            )
        return None

    def multipart_abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            with self._errors(key):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except NotFound:
            return
        except StorageUnavailable as err:
            cause = err.__cause__
            if isinstance(cause, ClientError) and "NoSuchUpload" in str(cause):
                return  # already gone
            raise


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
    `source == destination` (a file uploaded straight to its final key) copies nothing.
    `size`, the source's when the caller knows it, saves a request.
    """
    if source == destination:
        return
    if store.exists(destination):
        if sha256_of(store, destination) == sha256:
            return
        raise Conflict(
            f"The key {destination!r} already holds other bytes; published objects "
            "are never overwritten."
        )
    store.copy(source, destination, size=size)
