"""The management command's side of a resumable upload: parts read from the file at
their offsets and sent four at a time straight to storage (S3 presigned URLs over HTTP;
in the embedded mode the part files are written here, as the app would write them).

The command runs beside the app, so it calls the resumable-upload services itself
rather than the REST API; the parts still never pass through a web process. A re-run
with `--resume <id>` asks storage which parts it holds and sends only the others.

Every part goes with its CRC32 (the upload is begun with `checksum="crc32"`, as boto3's
`upload_file` declares it): each thread reads its part once to take the CRC32, asks for
the part's URL with it, then streams the part again from the file (the second read
comes from the page cache), so storage takes exactly the bytes that were read and
memory holds no part.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.core.exceptions import ValidationError

from catalog.audit import Actor
from catalog.digests import crc32_of
from catalog.exceptions import InvalidInput, NotFound, StorageUnavailable
from catalog.storage import get_object_store
from versioning.models import JobSource, PartChecksum, PublishJob, ResumableUpload
from versioning.options import PublishOptions
from versioning.services.resumable import (
    resumable_upload_complete,
    resumable_upload_create,
    resumable_upload_join,
    resumable_upload_part_urls,
    resumable_upload_part_write,
    resumable_upload_parts,
)

THREADS = 4
_READ = 1024 * 1024
_ATTEMPTS = 3


class _PartReader:
    """`length` bytes of a file from `offset`, read in chunks as the sender asks;
    `on_read` hears of every chunk (the progress bar)."""

    def __init__(self, path: Path, offset: int, length: int, on_read) -> None:
        self.handle = path.open("rb")
        self.handle.seek(offset)
        self.left, self.length, self.on_read = length, length, on_read

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = _READ if size is None or size < 0 else size
        data = self.handle.read(min(size, self.left))
        self.left -= len(data)
        self.on_read(len(data))
        return data

    def close(self) -> None:
        self.handle.close()


def _crc32_of_part(path: Path, offset: int, length: int) -> str:
    value = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        while length > 0 and (chunk := handle.read(min(_READ * 8, length))):
            value = zlib.crc32(chunk, value)
            length -= len(chunk)
    return crc32_of(value)


def _upload_of(*, dataset, path: Path, resume: str) -> ResumableUpload:
    try:
        upload = ResumableUpload.objects.filter(pk=resume, dataset=dataset).first()
    except ValidationError:
        upload = None
    if upload is None:
        raise NotFound(f"No upload {resume} of {dataset.path}.")
    if upload.size != path.stat().st_size:
        raise InvalidInput(
            f"Upload {resume} is of {upload.size:,} bytes; {path} has {path.stat().st_size:,}."
        )
    return upload


def resumable_send(
    *,
    dataset,
    path: Path,
    options: PublishOptions,
    sha256: str,
    resume: str,
    bar,
    say: Callable[[str], None],
) -> PublishJob:
    """Begins (or resumes) the upload of `path`, sends the missing parts, completes it
    and returns the publish job."""
    actor = Actor.system(via="command")
    if resume:
        upload = _upload_of(dataset=dataset, path=path, resume=resume)
    else:
        upload = resumable_upload_create(
            dataset=dataset,
            actor=actor,
            source=JobSource.COMMAND,
            filename=path.name,
            size=path.stat().st_size,
            sha256=sha256,
            options=options,
            checksum=PartChecksum.CRC32,
        )
    say(
        f"Resumable upload {upload.pk}: {upload.part_count} parts of {upload.part_size:,} "
        f"bytes. If it stops, run again with --resume {upload.pk}."
    )
    held = resumable_upload_parts(upload=upload)
    bar.update(sum(part.size for part in held))
    received = {part.number for part in held}
    missing = [n for n in range(1, upload.part_count + 1) if n not in received]
    say(f"Sending {len(missing)} of {upload.part_count} parts.")
    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            bar.update(n)

    local = hasattr(get_object_store(), "multipart_part_write")

    def send(number: int) -> None:
        offset, size = (number - 1) * upload.part_size, upload.part_length(number)
        crc32 = ""
        if upload.checksum == PartChecksum.CRC32:
            crc32 = _crc32_of_part(path, offset, size)
        for attempt in range(1, _ATTEMPTS + 1):
            reader = _PartReader(path, offset, size, progress)
            try:
                if local:
                    resumable_upload_part_write(
                        upload=upload, number=number, stream=reader, length=size, crc32=crc32
                    )
                else:
                    (part,) = resumable_upload_part_urls(
                        upload=upload, numbers=[number], crc32={number: crc32} if crc32 else None
                    )
                    _put(part.url.url, reader, part.headers)
                return
            except StorageUnavailable:
                progress(-(size - reader.left))
                if attempt == _ATTEMPTS:
                    raise
            finally:
                reader.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(send, number) for number in missing]:
            future.result()
    # The join runs here, as the rest of the command does, not in a worker.
    resumable_upload_complete(upload=upload, actor=actor, dispatch=False)
    job = resumable_upload_join(upload_id=upload.pk)
    if job is None:
        upload.refresh_from_db()
        raise InvalidInput(upload.message or f"The upload is {upload.status}.")
    return job


def _put(url: str, reader: _PartReader, headers: dict[str, str]) -> None:
    import urllib3

    try:
        response = _pool().request(
            "PUT",
            url,
            body=reader,
            headers={"Content-Length": str(len(reader)), **headers},
            preload_content=True,
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=300),
        )
    except urllib3.exceptions.HTTPError as err:
        raise StorageUnavailable(f"Sending a part failed: {err}.") from err
    if response.status >= 500:
        raise StorageUnavailable(f"Storage answered {response.status} to a part.")
    if response.status >= 400:
        raise InvalidInput(f"Storage refused a part ({response.status}): {response.data[:300]!r}.")


_pools: dict[str, object] = {}


def _pool():
    import urllib3

    if "pool" not in _pools:
        _pools["pool"] = urllib3.PoolManager(maxsize=THREADS)
    return _pools["pool"]
