"""Resumable uploads: a large file sent in parts straight to storage, not through a web
worker, and resumed after a break by sending only the parts that did not arrive.

    resumable_upload_create     check the publisher and the options as a publish would,
                                choose the part size and the publish job's id, begin a
                                multipart upload at the key of the version the publisher
                                named when it is free (so publishing it copies nothing),
                                else at the job's staging key
    resumable_upload_part_urls  URLs that each take one part: S3 presigned UploadPart URLs,
                                or, embedded, app-served URLs signed like its downloads;
                                for an upload begun with per-part CRC32s, each URL takes
                                only the bytes of the CRC32 it was asked with
    resumable_upload_parts      which parts storage holds, with their sizes and ETags (the
                                resume question); storage is the truth, not the database
    resumable_upload_complete   every part there and of its size: hand the upload to a
                                worker (the request never waits for the join)
    resumable_upload_join       in the worker: join the parts (S3 does it itself; at a
                                version's key only if no object is there yet), check the
                                SHA-256 if one was given, then queue the publish job for
                                the object where it lies: no copy, and the publish worker
                                reads it once, as any job
    resumable_upload_abort      the client gives up: the parts go
    resumable_uploads_sweep     hourly: uploads unfinished past RESUMABLE_UPLOAD_EXPIRE_HOURS
                                are aborted and their parts removed

The shape follows S3 multipart uploads (and tus's "which offset do you have?" for
resume): parts are fixed-size, numbered from 1, and any may be sent again. Each step is
claimed by a conditional update (open -> completing -> joining -> completed or refused),
so two completes never both queue a job. Joining is a worker's job because it is not
quick: moto's S3 took over 30 s (gunicorn's request timeout) to join 1 GiB, and AWS warns
that a CompleteMultipartUpload of a large object can take minutes.

Per-part checksums are the client's choice (`checksum="crc32"` at the start), because
they ask something of it. Without them storage picks its own checksum for the joined
object: AWS's default (and moto's) is a CRC64NVME of the whole object, computed when the
parts are joined, which took moto about half of a 1 GiB completion. With them, the
upload declares CRC32 (storage keeps one per part, as for boto3's `upload_file`), the
client gives each part's CRC32 when it asks for that part's URL, and the URL is signed
with it (S3: `x-amz-checksum-crc32` among the presigned URL's signed headers; embedded:
in the HMAC), so storage takes exactly those bytes for that part and nothing else. They
cannot be the default: MinIO refuses a part of a CRC32 upload sent without the header,
and AWS refuses an x-amz-* header a presigned URL did not sign, so a client that sends
bare PUTs (curl) could not send a part at all.

Only a version the publisher named is uploaded to straight: an upload left open for
hours must not hold the key of a version the worker could give another publish
meanwhile; one without a version goes to staging and its publish copies it once. That
copy is started when the upload is joined, not after the inspection: the job is queued
holding the key of the version it will most likely get (as a direct upload is sent to
it), and its worker copies the file there while it reads it (moto took about 6 s to
copy 1 GiB, more than the inspection's 3.5 s; on AWS the copy is server-side time the
worker no longer waits for).

Parts of an upload that the database lost track of are still caught by the bucket-wide
sweep (`catalog.storage.uploads_abandoned_abort`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.audit import Actor, audit_record
from catalog.digests import DigestMismatch, crc32_base64, sha256_hex
from catalog.exceptions import (
    Conflict,
    DomainError,
    FileRejected,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from catalog.inspection import detect_format
from catalog.keys import CONTENT_TYPES, staging_key
from catalog.models import Dataset
from catalog.multipart import UploadedPart
from catalog.queue import send_task
from catalog.services import ensure_steward
from catalog.storage import SignedUrl, get_object_store
from versioning.models import (
    JobSource,
    PartChecksum,
    PublishJob,
    ResumableUpload,
    UploadStatus,
)
from versioning.options import PublishOptions
from versioning.services.intake import (
    publish_job_create_staged,
    requested_version_check,
    upload_key,
)
from versioning.services.jobs import version_key_held
from versioning.services.lineage import input_label, inputs_resolve

logger = logging.getLogger(__name__)

JOIN_TASK = "versioning.join_resumable_upload"
MAX_PARTS = 10_000  # S3's limit
_MIB = 1024**2
_HEAD_BYTES = 64
# The header a part's PUT carries its CRC32 in, as S3 names it (the embedded mode's
# part URLs take it too).
CRC32_HEADER = "x-amz-checksum-crc32"


@dataclass(frozen=True)
class PartUrl:
    number: int
    size: int
    url: SignedUrl
    crc32: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """The headers the part's PUT must carry besides its body."""
        return {CRC32_HEADER: self.crc32} if self.crc32 else {}


def part_size_for(size: int) -> int:
    """RESUMABLE_PART_BYTES, or more (whole MiB) when the file would need more than
    S3's 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(settings.RESUMABLE_PART_BYTES, -(-needed // _MIB) * _MIB)


def resumable_upload_create(
    *,
    dataset: Dataset,
    actor: Actor,
    source: str,
    filename: str,
    size: int,
    sha256: str = "",
    options: PublishOptions | None = None,
    checksum: str = PartChecksum.NONE,
) -> ResumableUpload:
    """Begins a resumable upload of `size` bytes named `filename`, to be published as
    `options` ask; with `checksum="crc32"` every part's URL is asked for with the part's
    CRC32 (see the module's docstring). Raises Forbidden unless the actor stewards the
    dataset's organisation; InvalidInput for a size of 0 or above MAX_UPLOAD_BYTES, a
    malformed SHA-256, an unknown checksum, a taken or too-low version or a bad input;
    FileRejected for a name no publish takes."""
    options = options or PublishOptions()
    ensure_steward(actor=actor, organization=dataset.organization)
    if source not in JobSource.values:
        raise InvalidInput(f"Unknown publish source {source!r}.")
    if checksum not in PartChecksum.values:
        raise InvalidInput(
            f'checksum must be "crc32" or left out, not {checksum!r}.',
            details={"field": "checksum"},
        )
    limit = settings.MAX_UPLOAD_BYTES
    if size < 1 or size > limit:
        raise InvalidInput(
            f"size must be between 1 and {limit:,} bytes (MAX_UPLOAD_BYTES), not {size:,}.",
            details={"field": "size", "max_upload_bytes": limit},
        )
    if sha256:
        sha256 = sha256_hex(sha256)
    requested_version_check(dataset, options.version)
    options = options.with_inputs(
        input_label(v) for v in inputs_resolve(dataset=dataset, inputs=options.inputs)
    )
    # The name decides the key's extension now; the bytes are checked at completion.
    file_format = detect_format(filename, b"")
    job_id = uuid.uuid4()
    key, _version = upload_key(
        dataset=dataset, job_id=job_id, file_format=file_format, options=options, predict=False
    )
    store = get_object_store()
    storage_upload_id = store.multipart_begin(
        key, content_type=CONTENT_TYPES[file_format], crc32=checksum == PartChecksum.CRC32
    )
    now = timezone.now()
    try:
        with transaction.atomic():
            upload = ResumableUpload.objects.create(
                dataset=dataset,
                requested_by=actor.user if getattr(actor.user, "pk", None) else None,
                source=source,
                filename=filename[:300],
                format=file_format,
                size=size,
                part_size=part_size_for(size),
                sha256=sha256,
                checksum=checksum,
                options=options.job_fields(),
                job_id=job_id,
                staging_key=key,
                storage_upload_id=storage_upload_id,
                ip_address=actor.ip_address,
                expires_at=now + timedelta(hours=settings.RESUMABLE_UPLOAD_EXPIRE_HOURS),
            )
            audit_record(
                actor=actor,
                action="version.upload_started",
                obj=upload,
                organization=dataset.organization,
                details={"dataset": dataset.path, "file": filename, "size_bytes": size},
            )
    except BaseException:
        store.multipart_abort(key, storage_upload_id)
        raise
    return upload


def _options_of(upload: ResumableUpload) -> PublishOptions:
    fields = upload.options
    return PublishOptions(
        version=fields.get("requested_version", ""),
        note=fields.get("note", ""),
        allow_breaking=fields.get("allow_breaking", False),
        draft=fields.get("draft", False),
        inputs=tuple(fields.get("inputs", ())),
    )


def _ensure_open(upload: ResumableUpload) -> None:
    if upload.status == UploadStatus.OPEN:
        return
    if upload.status == UploadStatus.COMPLETED:
        raise Conflict(
            "This upload is already complete; follow its publish job.",
            details={"status": upload.status, "job_id": str(upload.job_id)},
        )
    if upload.status in (UploadStatus.COMPLETING, UploadStatus.JOINING):
        raise Conflict(
            "This upload is being completed; follow it until its publish job exists.",
            details={"status": upload.status},
        )
    raise Conflict(
        f"This upload is {upload.get_status_display().lower()}; its parts are gone. "
        "Begin a new upload.",
        details={"status": upload.status},
    )


def _check_part_number(upload: ResumableUpload, number: int) -> None:
    if not 1 <= number <= upload.part_count:
        raise InvalidInput(
            f"Part numbers of this upload run from 1 to {upload.part_count}, not {number}.",
            details={"part_number": number, "part_count": upload.part_count},
        )


def resumable_upload_parts(*, upload: ResumableUpload) -> list[UploadedPart]:
    """The parts storage holds for an open upload (none once it is finished)."""
    if upload.status != UploadStatus.OPEN:
        return []
    try:
        return get_object_store().multipart_parts(upload.staging_key, upload.storage_upload_id)
    except NotFound:
        return []


def _checksums_check(
    upload: ResumableUpload, numbers: list[int] | None, crc32: dict[int, str] | None
) -> dict[int, str]:
    """The CRC32 of each part asked for, checked against how the upload was begun."""
    crc32 = crc32 or {}
    if upload.checksum != PartChecksum.CRC32:
        if crc32:
            raise InvalidInput(
                "This upload was begun without per-part checksums: ask for part URLs "
                'without crc32, or begin a new upload with "checksum": "crc32".',
                details={"field": "crc32", "checksum": upload.checksum},
            )
        return {}
    wanted = list(crc32) if numbers is None else numbers
    missing = sorted({n for n in wanted if n not in crc32})
    if not wanted or missing:
        raise InvalidInput(
            'This upload was begun with "checksum": "crc32": ask for each part\'s URL '
            'with its CRC32, e.g. {"parts": [{"part_number": 1, "crc32": "yZRlqg=="}]}.',
            details={"field": "crc32", "parts_without_crc32": missing[:1000]},
        )
    return {
        number: crc32_base64(value, field=f"crc32 of part {number}")
        for number, value in crc32.items()
    }


def resumable_upload_part_urls(
    *,
    upload: ResumableUpload,
    numbers: list[int] | None = None,
    crc32: dict[int, str] | None = None,
) -> list[PartUrl]:
    """A URL for each part in `numbers` (default: every part storage does not hold yet;
    for an upload begun with per-part CRC32s, the parts in `crc32`, which must give the
    CRC32 of each part asked for), valid for RESUMABLE_PART_URL_SECONDS or until the
    upload expires, if sooner. InvalidInput for a part number out of range, a part
    without its CRC32 (or with one, on an upload begun without), a malformed CRC32."""
    _ensure_open(upload)
    store = get_object_store()
    crc32 = _checksums_check(upload, numbers, crc32)
    if numbers is None and crc32:
        numbers = list(crc32)
    elif numbers is None:
        held = {part.number for part in resumable_upload_parts(upload=upload)}
        numbers = [n for n in range(1, upload.part_count + 1) if n not in held]
    for number in numbers:
        _check_part_number(upload, number)
    ttl = min(
        settings.RESUMABLE_PART_URL_SECONDS,
        int((upload.expires_at - timezone.now()).total_seconds()),
    )
    if ttl < 1:
        raise Conflict(
            "This upload has expired; begin a new upload.", details={"status": "expired"}
        )
    return [
        PartUrl(
            number=number,
            size=upload.part_length(number),
            url=store.multipart_part_url(
                upload.staging_key,
                upload.storage_upload_id,
                number,
                length=upload.part_length(number),
                ttl=ttl,
                crc32=crc32.get(number, ""),
            ),
            crc32=crc32.get(number, ""),
        )
        for number in sorted(set(numbers))
    ]


def resumable_upload_part_write(
    *,
    upload: ResumableUpload,
    number: int,
    stream: IO[bytes],
    length: int | None,
    crc32: str = "",
) -> UploadedPart:
    """The embedded mode's part upload: `stream` must hold exactly this part's size and,
    for an upload begun with per-part CRC32s, have the CRC32 `crc32` (DigestMismatch
    otherwise: nothing is kept of it)."""
    _ensure_open(upload)
    _check_part_number(upload, number)
    crc32 = _checksums_check(upload, [number], {number: crc32} if crc32 else None).get(number, "")
    expected = upload.part_length(number)
    if length is not None and length != expected:
        raise InvalidInput(
            f"Part {number} must be exactly {expected:,} bytes, not {length:,}.",
            details={"part_number": number, "expected_size": expected, "size": length},
        )
    return get_object_store().multipart_part_write(
        upload.storage_upload_id, number, stream, length=expected, crc32=crc32
    )


def _claim(upload: ResumableUpload, *, status: str) -> None:
    """open -> `status`, or Conflict when another request got there first."""
    claimed = ResumableUpload.objects.filter(pk=upload.pk, status=UploadStatus.OPEN).update(
        status=status
    )
    if not claimed:
        upload.refresh_from_db()
        _ensure_open(upload)
    upload.status = status


def _finish(upload: ResumableUpload, status: str, error: DomainError | None = None) -> None:
    now = timezone.now()
    fields = {"status": status, "finished_at": now}
    if error is not None:
        fields.update(message=error.message, error_code=error.code, error_details=error.details)
    ResumableUpload.objects.filter(pk=upload.pk).update(**fields)
    for name, value in fields.items():
        setattr(upload, name, value)


def resumable_upload_complete(
    *, upload: ResumableUpload, actor: Actor, dispatch: bool = True
) -> ResumableUpload:
    """Checks that every part is there with its exact size and hands the upload to a
    worker (`resumable_upload_join`, sent after commit unless `dispatch` is False), which
    joins the parts and queues the publish job. Joining takes time in proportion to the
    size on some stores (and a SHA-256 check reads the whole object), so no request waits
    for it. Missing or wrong-sized parts leave the upload open for the client to send
    them. Completing again while the upload waits for its worker sends the task again
    (in case it was lost)."""
    if upload.status == UploadStatus.COMPLETING:
        if dispatch:
            send_task(JOIN_TASK, str(upload.pk))
        return upload
    _ensure_open(upload)
    _claim(upload, status=UploadStatus.COMPLETING)
    try:
        parts = get_object_store().multipart_parts(upload.staging_key, upload.storage_upload_id)
        _check_parts(upload, parts)
    except (InvalidInput, StorageUnavailable, NotFound):
        ResumableUpload.objects.filter(pk=upload.pk).update(status=UploadStatus.OPEN)
        upload.status = UploadStatus.OPEN
        raise
    audit_record(
        actor=actor,
        action="version.upload_completed",
        obj=upload,
        organization=upload.dataset.organization,
        details={"dataset": upload.dataset.path, "file": upload.filename, "size": upload.size},
    )
    if dispatch:
        transaction.on_commit(lambda: send_task(JOIN_TASK, str(upload.pk)))
    return upload


def resumable_upload_join(*, upload_id) -> PublishJob | None:
    """In a worker: joins the parts of a completed upload at its staging key, then
    queues the publish job for the object where it lies, with the id chosen when the
    upload began. The SHA-256 the upload began with is checked where the bytes are read
    anyway: here when the store joins by reading the parts (the embedded mode; a
    mismatch is refused, nothing is kept and the upload says why), else by the job's
    one read of the object (a mismatch fails the job and removes the object). Claimed
    by a conditional update (completing -> joining), so a task sent twice joins once. A
    storage failure sends the upload back to `completing`, for the task's retry."""
    claimed = ResumableUpload.objects.filter(pk=upload_id, status=UploadStatus.COMPLETING).update(
        status=UploadStatus.JOINING
    )
    if not claimed:
        return None
    upload = ResumableUpload.objects.select_related("dataset__organization").get(pk=upload_id)
    store = get_object_store()
    key = upload.staging_key
    target_version = _target_version(upload)
    try:
        parts = store.multipart_parts(key, upload.storage_upload_id)
        _check_parts(upload, parts)
        actual = store.multipart_complete(
            key,
            upload.storage_upload_id,
            parts,
            sha256=bool(upload.sha256),
            if_absent=bool(target_version),
        )
    except Conflict:
        # Another publish put its file at this version's key first (a worker that gave
        # that version to a file without one): its bytes stay, these go.
        store.multipart_abort(key, upload.storage_upload_id)
        _finish(
            upload,
            UploadStatus.REFUSED,
            Conflict(
                f"Another publish of {upload.dataset.path} took version {target_version} "
                "first; nothing was kept. Upload the file again as another version."
            ),
        )
        return None
    except StorageUnavailable:
        ResumableUpload.objects.filter(pk=upload.pk).update(status=UploadStatus.COMPLETING)
        raise
    except (InvalidInput, NotFound) as exc:
        # The parts changed after the request checked them (one sent again, shorter).
        ResumableUpload.objects.filter(pk=upload.pk).update(
            status=UploadStatus.OPEN,
            message=exc.message,
            error_code=exc.code,
            error_details=exc.details,
        )
        return None
    try:
        # A store that joins the parts itself (the embedded mode) hashed them as it went;
        # otherwise the publish job's one read of the object checks the digest.
        if upload.sha256 and actual and actual != upload.sha256:
            raise DigestMismatch(
                f"The file's SHA-256 is {actual}, not the {upload.sha256} the upload "
                "began with. Nothing was kept; upload the file again.",
                details={"expected_sha256": upload.sha256, "actual_sha256": actual},
            )
        file_format = detect_format(upload.filename, store.read_range(key, 0, _HEAD_BYTES))
        job = publish_job_create_staged(
            dataset=upload.dataset,
            job_id=upload.job_id,
            key=key,
            file_format=file_format,
            size=upload.size,
            filename=upload.filename,
            actor=Actor(user=upload.requested_by, ip_address=upload.ip_address, via=upload.source),
            source=upload.source,
            options=_options_of(upload),
            expected_sha256="" if actual else upload.sha256,
            target_version=target_version,
            predict=not target_version,
        )
    except (DigestMismatch, FileRejected) as exc:
        store.delete(key)
        _finish(upload, UploadStatus.REFUSED, exc)
        return None
    # Any other failure after the join (storage or the database away) leaves the upload
    # joining, its object at the staging key: the sweeper removes it at expiry.
    _finish(upload, UploadStatus.COMPLETED)
    return job


def _target_version(upload: ResumableUpload) -> str:
    """The version whose key the upload was begun at, or "" for a staging key."""
    staged = staging_key(
        org=upload.dataset.organization.slug, job_id=str(upload.job_id), format=upload.format
    )
    return "" if upload.staging_key == staged else _options_of(upload).version


def _check_parts(upload: ResumableUpload, parts: list[UploadedPart]) -> None:
    held = {part.number: part for part in parts}
    missing = [n for n in range(1, upload.part_count + 1) if n not in held]
    if missing:
        raise InvalidInput(
            f"{len(missing)} of the {upload.part_count} parts have not arrived: send them, "
            "then complete again.",
            details={"missing_parts": missing[:1000]},
        )
    wrong = [
        {"part_number": n, "size": held[n].size, "expected_size": upload.part_length(n)}
        for n in range(1, upload.part_count + 1)
        if held[n].size != upload.part_length(n)
    ]
    if wrong:
        raise InvalidInput(
            "Some parts are not the size they must be: send them again, then complete.",
            details={"wrong_size_parts": wrong[:1000]},
        )
    extra = [n for n in held if n > upload.part_count]
    if extra:
        raise InvalidInput(
            f"Parts beyond the last ({upload.part_count}) were sent: {extra[:10]}.",
            details={"extra_parts": extra[:1000]},
        )


def resumable_upload_abort(*, upload: ResumableUpload, actor: Actor) -> None:
    """Cancels an open upload and removes its parts."""
    _claim(upload, status=UploadStatus.ABORTED)
    get_object_store().multipart_abort(upload.staging_key, upload.storage_upload_id)
    _finish(upload, UploadStatus.ABORTED)
    audit_record(
        actor=actor,
        action="version.upload_aborted",
        obj=upload,
        organization=upload.dataset.organization,
        details={"dataset": upload.dataset.path, "file": upload.filename},
    )


def resumable_uploads_sweep(*, now: datetime | None = None) -> int:
    """Aborts uploads left unfinished past their expiry and removes their parts (and the
    joined object of one whose completion stopped before its job existed); returns how
    many. A storage failure leaves the upload for the next sweep."""
    now = now or timezone.now()
    store = get_object_store()
    swept = 0
    expired = ResumableUpload.objects.filter(
        status__in=[UploadStatus.OPEN, UploadStatus.COMPLETING, UploadStatus.JOINING],
        expires_at__lt=now,
    )
    for upload in expired.iterator():
        try:
            store.multipart_abort(upload.staging_key, upload.storage_upload_id)
            # An object joined without its job is removed; but one at a version's key
            # that a version or another publish holds is theirs.
            if not PublishJob.objects.filter(pk=upload.job_id).exists() and not version_key_held(
                upload.staging_key
            ):
                store.delete(upload.staging_key)
        except StorageUnavailable:
            logger.warning("Upload %s left for the next sweep: storage unavailable", upload.pk)
            continue
        swept += ResumableUpload.objects.filter(pk=upload.pk, status=upload.status).update(
            status=UploadStatus.EXPIRED, finished_at=now
        )
    return swept
