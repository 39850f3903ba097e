"""Taking a file in for publishing: the first half of the publish pipeline (design:
"The publish path"); `versioning.services.publish` runs the job it queues.

    publish_job_create              write the job's row (`uploading`: it holds the key
                                    the file goes to), stream the file into storage
                                    while inspecting it (`catalog.inspection.
                                    UploadInspector`: hash, rows, column types, on a
                                    thread of its own, so parsing overlaps the upload),
                                    then queue the job with that profile and send its
                                    task after commit
    publish_job_create_from_object  copy an object already in the bucket to a staging
                                    key server-side and queue it (its worker inspects it)

The bytes travel once, and on S3 usually land where they stay: S3 has no rename, and a
CopyObject of a large file costs as much as a fresh upload (moto: 1.5 s for 256 MiB, as
long as the upload itself). So an upload goes straight to the key of the version it
will most likely be (held meanwhile: `version_key_held`): the version the publisher
named, else the one the worker gives a data-only change (or a new dataset's first
version) when no other publish of the dataset is waiting. A staging key is used only
when that key is taken. When the worker decides another version (the columns changed),
it copies the object once, as from staging. Whatever is uploaded is removed when no job
comes of it.

The row comes first so that the database always knows who holds a key: a second upload
started meanwhile sees it and goes to staging, and a process that dies mid-way leaves a
row whose lease runs out, which the sweeper fails, removing the object
(`reservations_expired_fail`), where it would otherwise leave an object nothing refers
to at the key of the version the next publish needs.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.audit import Actor, audit_record
from catalog.digests import CheckedStream, sha256_hex
from catalog.exceptions import Conflict, FileRejected, InvalidInput, NotFound
from catalog.inspection import FileProfile, UploadInspector, detect_format
from catalog.keys import CONTENT_TYPES, staging_key, version_key
from catalog.models import Dataset
from catalog.services import ensure_steward
from catalog.storage import get_object_store
from versioning.models import (
    DatasetVersion,
    JobSource,
    JobStatus,
    PublishJob,
    ResumableUpload,
    UploadStatus,
)
from versioning.options import PublishOptions
from versioning.selectors import version_numbers_taken
from versioning.semver import Version, parse_version
from versioning.services.compatibility import version_for_change
from versioning.services.diff import schema_diff
from versioning.services.jobs import (
    ACTIVE,
    ProgressBeat,
    job_objects_discard,
    lease_end,
    publish_job_dispatch,
    refusable,
    version_key_held,
)
from versioning.services.lineage import input_label, inputs_resolve
from versioning.services.publish import publish_job_run_here

_HEAD_BYTES = 64
# A resumable upload in these states may still complete at its key.
UNFINISHED_UPLOADS = (UploadStatus.OPEN, UploadStatus.COMPLETING, UploadStatus.JOINING)


class _Prefixed:
    """A read-only stream that replays bytes already read from `stream` first."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._stream.read(size - len(data))
            return data
        return self._stream.read(size)


def requested_version_check(dataset: Dataset, requested: str) -> None:
    """Early check at upload time, so an obviously wrong version is refused at once."""
    if not requested:
        return
    version = parse_version(requested)
    current = DatasetVersion.objects.filter(dataset=dataset, is_current=True).first()
    if current is not None and version <= Version.parse(current.version):
        raise InvalidInput(
            f"Version {version} is not above the current version {current.version} of "
            f"{dataset.path}."
        )
    if DatasetVersion.objects.filter(dataset=dataset, version=str(version)).exists():
        raise InvalidInput(f"{dataset.path} already has a version {version}.")


def publish_job_create(
    *,
    dataset: Dataset,
    stream: IO[bytes],
    filename: str,
    actor: Actor,
    source: str,
    options: PublishOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    expected_sha256: str = "",
    publish_now: bool = False,
    **fields: Any,
) -> PublishJob:
    """Streams `stream` into storage, inspecting it on the way, and queues a job that
    publishes it as `options` ask (see `PublishOptions`; the field names
    `requested_version`, `note`, `allow_breaking`, `inputs` and `draft` are also taken as
    keywords). Inputs are pinned to exact versions now.

    The file goes straight to its version's key when the publisher named a version that
    no other publish holds, else to a staging key. The profile read while uploading
    (SHA-256 of the bytes sent, size, rows, column types) is recorded on the job.

    `expected_sha256` (hex), when given, is the SHA-256 the publisher computed: bytes
    that do not match are refused (`DigestMismatch`) before any job exists.

    `publish_now`: a file of at most PUBLISH_INLINE_MAX_BYTES whose profile was recorded
    is published by this process as soon as its job has committed, as a worker would
    (`publish_job_run_here`), so the returned job is usually finished; when the
    dataset's lock is busy, or the caller holds a transaction (the job has not
    committed, so no worker could see it either), it is queued as any other. For a
    100 KiB file, a worker's task and a client following the job cost more than the
    publish itself (README, Benchmarks). Such a file is read whole before it is
    written, so storage is not asked first whether an object is at its predicted
    version's key (no version named): if it refuses the write there, the file is
    written to a staging key instead.

    Raises Forbidden unless the actor stewards the dataset's organisation, InvalidInput
    for a malformed, taken or too-low version or a bad input, FileRejected for an empty
    or unknown file, Conflict when another upload of the same version finished first.
    Whatever was uploaded is removed when no job comes of it.
    """
    options = _options_checked(
        dataset=dataset, actor=actor, source=source, options=options, **fields
    )
    if expected_sha256:
        stream = CheckedStream(stream, expected=sha256_hex(expected_sha256))
    head = stream.read(_HEAD_BYTES)
    if not head:
        raise FileRejected("The file is empty.")
    file_format = detect_format(filename, head)
    stream, held = _held_if_small(_Prefixed(head, stream), publish_now=publish_now)
    job_id = uuid.uuid4()
    key, target_version = upload_key(
        dataset=dataset,
        job_id=job_id,
        file_format=file_format,
        options=options,
        # A file held here can be sent again to staging if an object turns out to be at
        # its predicted version's key (storage refuses to write over it), so it needs no
        # request to ask first; a version named is asked about as before.
        look_in_storage=held is None or bool(options.version),
    )
    row = _job_fields(
        job_id=job_id,
        dataset=dataset,
        actor=actor,
        source=source,
        options=options,
        filename=filename,
        key=key,
        file_format=file_format,
        target_version=target_version,
    )
    store = get_object_store()
    while True:
        job = _reserve(row)
        try:
            size, inspector = _upload(job, stream, store, on_progress=on_progress)
            break
        except _KeyTaken:
            if held is not None and not options.version and row["target_key"]:
                # The version's key was taken (by another publish, or an object nobody
                # recorded): the file goes to staging, and its worker decides as for any.
                stream, job_id = io.BytesIO(held), uuid.uuid4()
                row = {
                    **row,
                    "id": job_id,
                    **_staged(dataset, job_id=job_id, file_format=file_format),
                }
                continue
            if options.version:
                raise Conflict(
                    f"Another upload of {dataset.path} {job.target_version} finished first; "
                    "publish this file as another version."
                ) from None
            raise Conflict(
                f"Another publish of {dataset.path} took version {job.target_version} while "
                "this file was uploading; nothing was kept. Send the file again."
            ) from None
    profile = inspector.finish()
    now = (
        publish_now
        and profile is not None
        and size <= settings.PUBLISH_INLINE_MAX_BYTES
        and not transaction.get_connection().in_atomic_block
    )
    try:
        job = _reservation_queue(
            job, actor=actor, options=options, size=size, profile=profile, dispatch=not now
        )
    except BaseException:
        _reservation_drop(job, store)
        raise
    if now and not publish_job_run_here(job=job, store=store):
        publish_job_dispatch(job.pk)
    return job


class _KeyTaken(Exception):
    """Storage refused to write the upload at its version's key: an object is there."""


def _held_if_small(stream: IO[bytes], *, publish_now: bool) -> tuple[IO[bytes], bytes | None]:
    """For a publish this process will run (`publish_now`), a file of at most
    PUBLISH_INLINE_MAX_BYTES read whole: (a stream of it, its bytes). Otherwise, or
    when the file is larger, (a stream replaying what was read, None)."""
    limit = settings.PUBLISH_INLINE_MAX_BYTES
    if not publish_now or limit <= 0:
        return stream, None
    taken = bytearray()
    while len(taken) <= limit and (chunk := stream.read(limit + 1 - len(taken))):
        taken += chunk
    if len(taken) > limit:
        return _Prefixed(bytes(taken), stream), None
    held = bytes(taken)
    return io.BytesIO(held), held


def _upload(
    job: PublishJob, stream: IO[bytes], store, *, on_progress: Callable[[int], None] | None
) -> tuple[int, UploadInspector]:
    """Streams the file to the key `job` holds, inspecting it on the way: (its size,
    the inspector, whose profile is ready). _KeyTaken when storage refused to write
    over an object at the version's key; on any failure the row and whatever was
    stored are removed (`_reservation_drop`)."""
    inspector = UploadInspector(stream, format=job.format)
    try:
        size = store.write(
            job.staging_key,
            inspector,
            content_type=CONTENT_TYPES[job.format],
            # The hold is renewed while bytes arrive; a hold the sweeper ended (this upload
            # was silent past its lease) stops the upload: nothing it sends could be kept.
            on_progress=ProgressBeat(
                PublishJob.objects.filter(pk=job.pk, status=JobStatus.UPLOADING),
                lost=lambda: ReservationLost(job),
                every=settings.PUBLISH_JOB_LEASE_SECONDS / 3,
                fresh=True,
                then=on_progress,
            ),
            if_absent=bool(job.target_version),
        )
    except ReservationLost:
        inspector.abandon()
        _reservation_drop(job, store)
        raise
    except Conflict:
        inspector.abandon()
        _reservation_drop(job, store, stored=False)  # the bytes at the key are another's
        raise _KeyTaken() from None
    except BaseException:
        inspector.abandon()
        _reservation_drop(job, store)
        raise
    return size, inspector


def _staged(dataset: Dataset, *, job_id: object, file_format: str) -> dict[str, str]:
    """A job row's fields for a file at the job's staging key (no version's key held)."""
    key = staging_key(org=dataset.organization.slug, job_id=str(job_id), format=file_format)
    return {"staging_key": key, "target_key": "", "target_version": ""}


class ReservationLost(Conflict):
    """The upload's row was failed by the sweeper (it went silent past its lease)."""

    def __init__(self, job: PublishJob) -> None:
        super().__init__(
            "The upload took longer than its hold on the dataset allows between two "
            f"signs of progress ({settings.PUBLISH_JOB_LEASE_SECONDS} s); nothing was kept. "
            "Send the file again."
        )


def _reserve(fields: dict[str, Any]) -> PublishJob:
    """The upload's row, written before its first byte goes, so that the key it writes
    is held from the start (`version_key_held`, `version_predicted`) and a process that
    dies mid-way leaves a row the sweeper finishes (`reservations_expired_fail`), never
    an object nothing refers to. When another upload took the same version's key a
    moment earlier (the table holds each key once), this one goes to a staging key."""
    fields = {**fields, "status": JobStatus.UPLOADING, "lease_until": lease_end()}
    try:
        with refusable():
            return PublishJob.objects.create(**fields)
    except IntegrityError:
        if not fields["target_key"] or fields["requested_version"]:
            raise Conflict(
                f"Another upload of {fields['dataset'].path} {fields['target_version']} "
                "is under way; publish this file as another version."
            ) from None
    fields.update(_staged(fields["dataset"], job_id=fields["id"], file_format=fields["format"]))
    return PublishJob.objects.create(**fields)


def _reservation_queue(
    job: PublishJob,
    *,
    actor: Actor,
    options: PublishOptions,
    size: int,
    profile: FileProfile | None,
    dispatch: bool = True,
) -> PublishJob:
    """The uploaded file's job, queued with the profile read on the way, its audit entry,
    and (with `dispatch`) its task after commit. ReservationLost when the sweeper failed
    the row meanwhile."""
    with transaction.atomic():
        queued = {
            "status": JobStatus.QUEUED,
            "lease_until": None,
            "bytes_total": size,
            "bytes_done": 0,
            "profile": profile.as_json() if profile else None,
        }
        if not PublishJob.objects.filter(pk=job.pk, status=JobStatus.UPLOADING).update(**queued):
            raise ReservationLost(job)
        for name, value in queued.items():
            setattr(job, name, value)
        _job_queued(job, actor=actor, options=options, dispatch=dispatch)
    return job


def _reservation_drop(job: PublishJob, store, *, stored: bool = True) -> None:
    """An upload under a reservation that failed: removes what it stored (unless
    `stored` is False: the bytes at the key are another upload's), then the row, which
    never became a job. When storage cannot be reached, the row stays, failed and
    marked, so that the sweeper removes the object later. A row the sweeper failed
    meanwhile stays failed, and what this upload stored after that is removed here."""
    rows = PublishJob.objects.filter(pk=job.pk, status=JobStatus.UPLOADING)
    if not stored:
        rows.delete()
        return
    ours = rows.update(
        status=JobStatus.FAILED,
        message="The upload failed; nothing was published.",
        error_code="upload_failed",
        finished_at=timezone.now(),
        lease_until=None,
    )
    if job_objects_discard(job=job, store=store) and ours:
        PublishJob.objects.filter(pk=job.pk).delete()


def _options_checked(
    *, dataset: Dataset, actor: Actor, source: str, options: PublishOptions | None, **fields: Any
) -> PublishOptions:
    options = options or PublishOptions.from_fields(**fields)
    ensure_steward(actor=actor, organization=dataset.organization)
    if source not in JobSource.values:
        raise InvalidInput(f"Unknown publish source {source!r}.")
    requested_version_check(dataset, options.version)
    return options.with_inputs(
        input_label(v) for v in inputs_resolve(dataset=dataset, inputs=options.inputs)
    )


def upload_key(
    *,
    dataset: Dataset,
    job_id: uuid.UUID,
    file_format: str,
    options: PublishOptions,
    predict: bool = True,
    look_in_storage: bool = True,
) -> tuple[str, str]:
    """Where an upload goes, and the version it is already the file of ("" when it goes
    to staging): the key of the version the publisher named or, with `predict`, of the
    version the worker will most likely decide (`version_predicted`), when no version,
    publish or resumable upload holds that key and no object is there, so that
    publishing it moves nothing; a staging key otherwise. Without `look_in_storage`,
    storage is not asked whether an object is at the key: for a caller that writes with
    `if_absent` and can send the file elsewhere when that is refused."""
    version = str(parse_version(options.version)) if options.version else ""
    if not version and predict:
        version = version_predicted(dataset)
    key = version_key_free(
        dataset=dataset, version=version, file_format=file_format, look_in_storage=look_in_storage
    )
    if key:
        return key, version
    return staging_key(org=dataset.organization.slug, job_id=str(job_id), format=file_format), ""


def version_key_free(
    *, dataset: Dataset, version: str, file_format: str, look_in_storage: bool = True
) -> str:
    """The key of `version` published today, when no version, publish or resumable
    upload holds it and (unless not `look_in_storage`) no object is there; else (and for
    no version) ""."""
    if not version:
        return ""
    key = version_key(
        org=dataset.organization.slug,
        layer=dataset.layer,
        name=dataset.name,
        day=timezone.now().date(),
        version=version,
        format=file_format,
    )
    if version_key_held(
        key,
        also=(ResumableUpload.objects.filter(staging_key=key, status__in=UNFINISHED_UPLOADS),),
    ) or (look_in_storage and get_object_store().exists(key)):
        return ""
    return key


def version_predicted(dataset: Dataset) -> str:
    """The version the worker will give a file whose columns are the current version's
    (a data-only change: the next patch; for a new dataset, its first version), or ""
    while another publish of the dataset waits or runs (it may take that version first,
    and this upload could then not complete at its key). The worker still decides from
    the file's profile; a prediction that proves wrong costs one copy, as staging does."""
    if PublishJob.objects.filter(dataset=dataset, status__in=ACTIVE).exists():
        return ""
    current = DatasetVersion.objects.filter(dataset=dataset, is_current=True)
    row = current.values_list("version", "schema", "row_count").first()
    version, schema, rows = row or (None, None, None)
    base = Version.parse(version) if version else None
    return str(
        version_for_change(
            dataset_path=dataset.path,
            mode=dataset.compatibility,
            diff=schema_diff(
                old=schema, new=schema or [], old_rows=rows, new_rows=rows, base_version=version
            ),
            base=base,
            taken=version_numbers_taken(dataset_id=dataset.pk, base=base),
        )
    )


def _job_fields(
    *,
    job_id: uuid.UUID,
    dataset: Dataset,
    actor: Actor,
    source: str,
    options: PublishOptions,
    filename: str,
    key: str,
    file_format: str,
    target_version: str = "",
    target_key: str = "",
    expected_sha256: str = "",
) -> dict[str, Any]:
    """A publish job's row for a file at `key`, which is the key of `target_version`
    unless `target_key` names that key (the file is then copied there when the version
    is decided as `target_version`)."""
    return {
        "id": job_id,
        "dataset": dataset,
        "requested_by": actor.user if getattr(actor.user, "pk", None) else None,
        "source": source,
        "source_name": filename[:300],
        "staging_key": key,
        "format": file_format,
        "ip_address": actor.ip_address,
        "target_version": target_version,
        "target_key": (target_key or key) if target_version else "",
        "expected_sha256": expected_sha256,
        **options.job_fields(),
    }


def _job_queued(
    job: PublishJob, *, actor: Actor, options: PublishOptions, dispatch: bool = True
) -> None:
    """What follows a job's queueing, in its transaction: its audit entry, and (unless
    not `dispatch`: the caller runs it, or dispatches it, itself) its task once the
    transaction commits. A job never dispatched is sent by the sweeper (its
    `dispatched_at` is empty)."""
    audit_record(
        actor=actor,
        action="version.publish_requested",
        obj=job,
        organization=job.dataset.organization,
        details={
            "dataset": job.dataset.path,
            "file": job.source_name,
            "size_bytes": job.bytes_total,
            **options.audit_details(),
        },
    )
    if dispatch:
        transaction.on_commit(lambda: publish_job_dispatch(job.pk))


def _job_record(
    *,
    size: int,
    actor: Actor,
    options: PublishOptions,
    **fields: Any,
) -> PublishJob:
    """The queued job for a file already in storage, its audit entry, and its task after
    commit."""
    with transaction.atomic():
        job = PublishJob.objects.create(
            bytes_total=size, **_job_fields(actor=actor, options=options, **fields)
        )
        _job_queued(job, actor=actor, options=options)
    return job


def publish_job_create_staged(
    *,
    dataset: Dataset,
    job_id: uuid.UUID,
    key: str,
    file_format: str,
    size: int,
    filename: str,
    actor: Actor,
    source: str,
    options: PublishOptions,
    expected_sha256: str = "",
    target_version: str = "",
    predict: bool = False,
) -> PublishJob:
    """Queues the publish of bytes already at `key` (a completed resumable upload,
    `versioning.services.resumable`), without copying them: a staging key, or the key
    of `target_version`, the version the upload was begun for. The caller checked the
    steward role, the version and the inputs (pinned) when the upload began; the worker
    inspects the object once, as for any job without a profile, and that read checks
    `expected_sha256` (hex) when given: other bytes fail the job.

    With `predict` (a staging key), the job holds the key of the version the worker will
    most likely decide (`version_predicted`) when it is free, so that the worker copies
    the file there while it inspects it (`publish._copy_ahead`) rather than after."""
    fields = dict(
        job_id=job_id,
        dataset=dataset,
        actor=actor,
        source=source,
        options=options,
        filename=filename,
        key=key,
        file_format=file_format,
        size=size,
        expected_sha256=expected_sha256,
        target_version=target_version,
    )
    if predict and not target_version:
        version = version_predicted(dataset)
        ahead = version_key_free(dataset=dataset, version=version, file_format=file_format)
        if ahead:
            try:
                return _job_record(**fields | {"target_version": version, "target_key": ahead})
            except IntegrityError:
                pass  # another publish took that key meanwhile: no copy ahead
    return _job_record(**fields)


def publish_job_create_from_object(
    *,
    dataset: Dataset,
    source_key: str,
    actor: Actor,
    source: str = JobSource.OBJECT,
    options: PublishOptions | None = None,
    expected_sha256: str = "",
    **fields: Any,
) -> PublishJob:
    """Queues the publish of an object already in the bucket (a pipeline wrote it there).

    The object is copied to a staging key first (server-side: no byte passes through
    this process), so that what is published cannot change under the job; the worker
    then inspects it once. With `expected_sha256` the object is streamed through instead,
    so that its digest is checked before any job exists. Raises NotFound when there is
    no such object, or when it lies outside the dataset's organisation's prefix (one
    organisation never publishes another's bytes).
    """
    options = options or PublishOptions.from_fields(**fields)
    ensure_steward(actor=actor, organization=dataset.organization)
    org_prefix = f"{dataset.organization.slug}/"
    if not source_key.startswith(org_prefix) or ".." in source_key.split("/"):
        raise NotFound(f"No object {source_key!r} in the organisation's storage.")
    store = get_object_store()
    if not store.exists(source_key):
        raise NotFound(f"No object {source_key!r} in the organisation's storage.")
    filename = source_key.rsplit("/", 1)[-1]
    if expected_sha256:
        with store.open(source_key) as stream:
            return publish_job_create(
                dataset=dataset,
                stream=stream,
                filename=filename,
                actor=actor,
                source=source,
                options=options,
                expected_sha256=expected_sha256,
            )
    options = _options_checked(dataset=dataset, actor=actor, source=source, options=options)
    head = store.read_range(source_key, 0, _HEAD_BYTES)
    if not head:
        raise FileRejected("The file is empty.")
    file_format = detect_format(filename, head)
    job_id = uuid.uuid4()
    key = staging_key(org=dataset.organization.slug, job_id=str(job_id), format=file_format)
    store.copy(source_key, key)
    try:
        return _job_record(
            job_id=job_id,
            dataset=dataset,
            actor=actor,
            source=source,
            options=options,
            filename=filename,
            key=key,
            file_format=file_format,
            size=store.size(key),
        )
    except BaseException:
        store.delete(key)
        raise
