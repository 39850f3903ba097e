"""The publish pipeline (design: "The publish path").

    publish_job_create   stream the file to a staging key, write a queued job, send its
                         task after commit; the request returns at once with the job
    publish_job_run      in a worker: claim the job, inspect the staged file in one
                         streaming pass, then under the dataset's lock: diff the schema
                         against the current version's, decide the version the diff calls
                         for (or check the publisher's against it and the dataset's
                         compatibility mode), copy to the immutable key, and in one
                         transaction write the version, its changelog and lineage, make it
                         current (unless it is a draft), regenerate the manifest and record
                         the events
    publish_jobs_sweep   periodically: send again the tasks of queued jobs whose dispatch
                         was lost, and take over running jobs whose worker died

Every failure leaves the previous version current, removes the staged object and
anything this job put at a final key, and fails the job with a message for a steward.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from catalog import events
from catalog.audit import Actor, audit_record
from catalog.exceptions import (
    Conflict,
    DomainError,
    FileRejected,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from catalog.inspection import FileProfile, detect_format, inspect_stream
from catalog.keys import CONTENT_TYPES, staging_key, version_key
from catalog.locks import dataset_lock
from catalog.models import Dataset
from catalog.queue import send_task
from catalog.services import ensure_steward
from catalog.storage import ObjectStore, copy_immutable, get_object_store
from versioning.manifest import manifest_generate
from versioning.models import (
    DatasetVersion,
    JobOutcome,
    JobSource,
    JobStatus,
    PublishJob,
    VersionStatus,
)
from versioning.semver import Version, parse_version, version_fields
from versioning.services.changelog import breaking_override_text, changelog_write
from versioning.services.compatibility import compatibility_check, version_for_change
from versioning.services.diff import SchemaDiff, schema_diff
from versioning.services.lineage import input_label, inputs_record, inputs_resolve

logger = logging.getLogger(__name__)

TASK_NAME = "versioning.run_publish_job"
_HEAD_BYTES = 64


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


def current_version(dataset: Dataset) -> DatasetVersion | None:
    return DatasetVersion.objects.filter(dataset=dataset, is_current=True).first()


def _check_requested_version(dataset: Dataset, requested: str) -> None:
    """Early check at upload time, so an obviously wrong version is refused at once."""
    if not requested:
        return
    version = parse_version(requested)
    current = current_version(dataset)
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
    requested_version: str = "",
    note: str = "",
    on_progress=None,
    allow_breaking: bool = False,
    inputs: Sequence[str] = (),
    draft: bool = False,
) -> PublishJob:
    """Streams `stream` to a staging key and queues a job that publishes it.

    `allow_breaking` lets a breaking change through with less than a major bump (the
    changelog records it; a dataset in strict mode still refuses it). `inputs` names the
    versions this one is built from (`["gold/txn_daily@1.2.0", ...]`), pinned now.
    `draft` (implied by a pre-release version such as 1.3.0-rc.1) publishes without
    making the version current: a steward promotes it later.

    Raises Forbidden unless the actor stewards the dataset's organisation, InvalidInput
    for a malformed, taken or too-low version or a bad input, FileRejected for an empty
    or unknown file.
    """
    ensure_steward(actor=actor, organization=dataset.organization)
    if source not in JobSource.values:
        raise InvalidInput(f"Unknown publish source {source!r}.")
    _check_requested_version(dataset, requested_version)
    pinned = [input_label(v) for v in inputs_resolve(dataset=dataset, inputs=inputs)]
    head = stream.read(_HEAD_BYTES)
    if not head:
        raise FileRejected("The file is empty.")
    file_format = detect_format(filename, head)
    job_id = uuid.uuid4()
    key = staging_key(org=dataset.organization.slug, job_id=str(job_id), format=file_format)
    store = get_object_store()
    size = store.write(
        key,
        _Prefixed(head, stream),
        content_type=CONTENT_TYPES[file_format],
        on_progress=on_progress,
    )
    try:
        with transaction.atomic():
            job = PublishJob.objects.create(
                id=job_id,
                dataset=dataset,
                requested_by=actor.user if getattr(actor.user, "pk", None) else None,
                source=source,
                source_name=filename[:300],
                staging_key=key,
                format=file_format,
                requested_version=requested_version.strip(),
                note=note,
                allow_breaking=allow_breaking,
                draft=draft,
                inputs=pinned,
                bytes_total=size,
                ip_address=actor.ip_address,
            )
            audit_record(
                actor=actor,
                action="version.publish_requested",
                obj=job,
                organization=dataset.organization,
                details={
                    "dataset": dataset.path,
                    "file": filename,
                    "size_bytes": size,
                    "requested_version": requested_version.strip(),
                    "allow_breaking": allow_breaking,
                    "draft": draft,
                    "inputs": pinned,
                },
            )
            transaction.on_commit(lambda: _dispatch(job.pk))
    except BaseException:
        store.delete(key)
        raise
    return job


def publish_job_create_from_object(
    *,
    dataset: Dataset,
    source_key: str,
    actor: Actor,
    source: str = JobSource.OBJECT,
    requested_version: str = "",
    note: str = "",
    allow_breaking: bool = False,
    inputs: Sequence[str] = (),
    draft: bool = False,
) -> PublishJob:
    """Queues the publish of an object already in the bucket (a pipeline wrote it there).

    The object is copied to a staging key first, so that what is published cannot change
    under the job. Raises NotFound when there is no such object, or when it lies outside
    the dataset's organisation's prefix (one organisation never publishes another's bytes).
    """
    ensure_steward(actor=actor, organization=dataset.organization)
    org_prefix = f"{dataset.organization.slug}/"
    if not source_key.startswith(org_prefix) or ".." in source_key.split("/"):
        raise NotFound(f"No object {source_key!r} in the organisation's storage.")
    store = get_object_store()
    if not store.exists(source_key):
        raise NotFound(f"No object {source_key!r} in the organisation's storage.")
    with store.open(source_key) as stream:
        head = stream.read(_HEAD_BYTES)
    if not head:
        raise FileRejected("The file is empty.")
    return publish_job_create(
        dataset=dataset,
        stream=store.open(source_key),
        filename=source_key.rsplit("/", 1)[-1],
        actor=actor,
        source=source,
        requested_version=requested_version,
        note=note,
        allow_breaking=allow_breaking,
        inputs=inputs,
        draft=draft,
    )


def _dispatch(job_id) -> None:
    if send_task(TASK_NAME, str(job_id)):
        PublishJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            dispatched_at=timezone.now()
        )


def _claim(job_id) -> PublishJob | None:
    """Takes the job for this worker: a queued one, or a running one whose lease ran out."""
    now = timezone.now()
    claimed = PublishJob.objects.filter(
        Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, lease_until__lt=now),
        pk=job_id,
    ).update(
        status=JobStatus.RUNNING,
        lease_until=now + timedelta(seconds=settings.PUBLISH_JOB_LEASE_SECONDS),
        started_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    return PublishJob.objects.select_related("dataset__organization", "requested_by").get(pk=job_id)


def publish_job_run(*, job_id) -> PublishJob | None:
    """Runs one publish job to its end. Safe to call twice: a job that is finished, or
    held by a live worker, is left alone."""
    job = _claim(job_id)
    if job is None:
        return None
    if job.attempts > settings.PUBLISH_JOB_MAX_ATTEMPTS:
        _fail(
            job,
            f"The publish was interrupted {job.attempts - 1} times (the worker stopped); "
            "upload the file again.",
            code="interrupted",
        )
        return job
    store = get_object_store()
    try:
        _run(job, store)
    except StorageUnavailable as exc:
        if job.attempts < settings.PUBLISH_JOB_MAX_ATTEMPTS:
            _requeue(job, store, exc)
        else:
            _fail(job, f"Storage kept failing: {exc.message}", code=exc.code, store=store)
    except DomainError as exc:
        # Only a verdict on the file itself (not a lost race) is a quality failure.
        refused = isinstance(exc, InvalidInput)
        _fail(job, exc.message, code=exc.code, store=store, details=exc.details, refused=refused)
    except Exception as exc:
        logger.exception("Publish job %s failed", job.pk)
        _fail(
            job,
            f"The publish stopped on an unexpected error ({type(exc).__name__}); nothing "
            "was published. Try again, or tell an administrator if it happens again.",
            code="internal",
            store=store,
        )
    job.refresh_from_db()
    return job


class _Heartbeat:
    """Reports progress and keeps the lease alive, at most once a second."""

    def __init__(self, job: PublishJob) -> None:
        self.job = job
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        PublishJob.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING).update(
            bytes_done=done,
            lease_until=timezone.now() + timedelta(seconds=settings.PUBLISH_JOB_LEASE_SECONDS),
        )


class _LeaseKept:
    """Keeps the job's lease alive from a thread while the worker waits for the dataset's
    lock (another publish may be copying a large file) and copies: neither reports
    progress, and either can outlast a lease, after which the job would look abandoned
    and be run a second time."""

    def __init__(self, job: PublishJob) -> None:
        self.job_id = job.pk
        self.every = max(1.0, settings.PUBLISH_JOB_LEASE_SECONDS / 3)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True)

    def __enter__(self) -> _LeaseKept:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _keep(self) -> None:
        from django.db import connection

        try:
            while not self.stop.wait(self.every):
                PublishJob.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(
                    lease_until=timezone.now()
                    + timedelta(seconds=settings.PUBLISH_JOB_LEASE_SECONDS)
                )
        except Exception:
            logger.warning("Could not extend the lease of publish job %s", self.job_id)
        finally:
            connection.close()  # this thread's own connection


def _run(job: PublishJob, store: ObjectStore) -> None:
    dataset = job.dataset
    if not store.exists(job.staging_key):
        raise FileRejected("The uploaded file is no longer in staging; upload it again.")
    with store.open(job.staging_key) as stream:
        profile = inspect_stream(stream, format=job.format, on_progress=_Heartbeat(job))
    with _LeaseKept(job), dataset_lock(dataset.pk):
        current = current_version(dataset)
        if current is not None and current.sha256 == profile.sha256:
            _finish_unchanged(job, current, store)
            return
        decision = _decide(job, dataset, current, profile)
        key = _target_key(job, dataset, decision.version)
        copy_immutable(store, job.staging_key, key, sha256=profile.sha256)
        _commit(job, dataset, current, decision, key, profile)
    store.delete(job.staging_key)


@dataclass(frozen=True)
class _Decision:
    version: Version
    diff: SchemaDiff
    draft: bool
    override: str  # the changelog's record of an allowed breaking change, or ""


def _decide(
    job: PublishJob, dataset: Dataset, current: DatasetVersion | None, profile: FileProfile
) -> _Decision:
    """Classifies the file against the current version and decides its number. Runs
    under the dataset's lock, so `current` is the result of any publish before it."""
    base = Version.parse(current.version) if current else None
    diff = schema_diff(
        old=current.schema if current else None,
        new=profile.schema,
        old_rows=current.row_count if current else None,
        new_rows=profile.row_count,
        old_size=current.size_bytes if current else None,
        new_size=profile.size_bytes,
        base_version=current.version if current else None,
    )
    taken = set(DatasetVersion.objects.filter(dataset=dataset).values_list("version", flat=True))
    override = ""
    if job.requested_version:
        version = parse_version(job.requested_version)
        if base is not None and version <= base:
            raise InvalidInput(
                f"Version {version} is not above the current version {current.version}."
            )
        if str(version) in taken:
            raise InvalidInput(f"{dataset.path} already has a version {version}.")
        claim = compatibility_check(
            dataset_path=dataset.path,
            mode=dataset.compatibility,
            diff=diff,
            base=base,
            candidate=version,
            allow_breaking=job.allow_breaking,
        )
        if claim:
            who = job.requested_by.get_username() if job.requested_by else ""
            override = breaking_override_text(claim=claim, columns=diff.breaking_columns, who=who)
    else:
        version = version_for_change(
            dataset_path=dataset.path,
            mode=dataset.compatibility,
            diff=diff,
            base=base,
            taken=taken,
        )
    diff = replace(diff, target_version=str(version))
    return _Decision(
        version=version, diff=diff, draft=job.draft or bool(version.prerelease), override=override
    )


def _target_key(job: PublishJob, dataset: Dataset, version: Version) -> str:
    """The final key, decided once per job and kept on the job, so a re-run after a crash
    finds the same key (and the bytes it already copied there)."""
    if job.target_version == str(version) and job.target_key:
        return job.target_key
    key = version_key(
        org=dataset.organization.slug,
        layer=dataset.layer,
        name=dataset.name,
        day=timezone.now().date(),
        version=str(version),
        format=job.format,
    )
    PublishJob.objects.filter(pk=job.pk).update(target_version=str(version), target_key=key)
    job.target_version, job.target_key = str(version), key
    return key


def _commit(
    job: PublishJob,
    dataset: Dataset,
    current: DatasetVersion | None,
    decision: _Decision,
    key: str,
    profile: FileProfile,
) -> None:
    now = timezone.now()
    version = decision.version
    try:
        with transaction.atomic():
            locked = PublishJob.objects.select_for_update().get(pk=job.pk)
            if locked.status != JobStatus.RUNNING:
                return  # another worker finished this job meanwhile
            if current is not None and not decision.draft:
                DatasetVersion.objects.filter(pk=current.pk).update(is_current=False)
            new = DatasetVersion.objects.create(
                dataset=dataset,
                **version_fields(version),
                status=VersionStatus.DRAFT if decision.draft else VersionStatus.ACTIVE,
                is_current=not decision.draft,
                key=key,
                format=profile.format,
                content_type=CONTENT_TYPES[profile.format],
                size_bytes=profile.size_bytes,
                sha256=profile.sha256,
                row_count=profile.row_count,
                schema=profile.schema,
                change_type=decision.diff.change_type,
                breaking=decision.diff.breaking,
                diff=decision.diff.as_dict(),
                note=job.note,
                parent=current,
                published_by=job.requested_by,
                published_at=now,
            )
            changelog_write(
                version=new, diff=decision.diff, note=job.note, override=decision.override
            )
            inputs_record(version=new, inputs=job.inputs)
            payload = {
                "dataset_id": dataset.pk,
                "dataset": dataset.path,
                "organization": dataset.organization.slug,
                "version_id": new.pk,
                "version": new.version,
                "previous_version": current.version if current else None,
                "status": new.status,
                "change_type": new.change_type,
                "breaking": new.breaking,
                "breaking_columns": decision.diff.breaking_columns,
                "sha256": new.sha256,
                "key": new.key,
                "inputs": list(job.inputs),
            }
            if decision.draft:
                events.event_record(
                    topic="version.drafted", payload=payload, organization=dataset.organization
                )
                message = (
                    f"Published {dataset.path} {new.version} as a draft ({new.change_type}"
                    f"{', breaking' if new.breaking else ''}): {new.row_count:,} rows, "
                    f"{new.size_bytes:,} bytes. "
                    + (
                        f"{current.version} stays current until a steward promotes it."
                        if current
                        else "A steward promotes it to make it current."
                    )
                )
            else:
                Dataset.objects.filter(pk=dataset.pk).update(updated_at=now)
                manifest_generate(organization=dataset.organization)
                events.event_record(
                    topic="version.published", payload=payload, organization=dataset.organization
                )
                message = (
                    f"Published {dataset.path} {new.version} ({new.change_type}"
                    f"{', breaking' if new.breaking else ''}): {new.row_count:,} rows, "
                    f"{new.size_bytes:,} bytes, SHA-256 {new.sha256}."
                )
            PublishJob.objects.filter(pk=job.pk).update(
                status=JobStatus.SUCCEEDED,
                outcome=JobOutcome.PUBLISHED,
                version=new,
                bytes_done=profile.size_bytes,
                message=message,
                finished_at=now,
                lease_until=None,
            )
            audit_record(
                actor=Actor(user=job.requested_by, ip_address=job.ip_address, via=job.source),
                action="version.publish_draft" if decision.draft else "version.publish",
                obj=new,
                organization=dataset.organization,
                details={
                    "job": str(job.pk),
                    "sha256": new.sha256,
                    "key": new.key,
                    "change_type": new.change_type,
                    "breaking": new.breaking,
                    "breaking_allowed": bool(decision.override),
                    "inputs": list(job.inputs),
                },
            )
    except IntegrityError as exc:
        raise Conflict(
            f"{dataset.path} {version} could not be recorded: another publish got there first."
        ) from exc


def _finish_unchanged(job: PublishJob, current: DatasetVersion, store: ObjectStore) -> None:
    PublishJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED,
        outcome=JobOutcome.UNCHANGED,
        version=current,
        bytes_done=current.size_bytes,
        message=f"The file is identical to the current version {current.version} "
        f"(SHA-256 {current.sha256}); no new version was created.",
        finished_at=timezone.now(),
        lease_until=None,
    )
    store.delete(job.staging_key)


def _discard_uncommitted(job: PublishJob, store: ObjectStore) -> None:
    """Removes what this job stored that no version row refers to."""
    store.delete(job.staging_key)
    job.refresh_from_db(fields=["target_key"])
    if job.target_key and not DatasetVersion.objects.filter(key=job.target_key).exists():
        store.delete(job.target_key)


def _fail(
    job: PublishJob,
    message: str,
    *,
    code: str,
    store: ObjectStore | None = None,
    details: dict | None = None,
    refused: bool = False,
) -> None:
    if store is not None:
        try:
            _discard_uncommitted(job, store)
        except DomainError:
            logger.warning("Could not clean up after failed publish job %s", job.pk)
    with transaction.atomic():
        failed = (
            PublishJob.objects.filter(pk=job.pk)
            .exclude(status=JobStatus.SUCCEEDED)
            .update(
                status=JobStatus.FAILED,
                message=message,
                error_code=code,
                error_details=_json_safe(details or {}),
                finished_at=timezone.now(),
                lease_until=None,
            )
        )
        if failed and refused:
            # `publish.failed`: the file was refused for its content, once per job.
            events.event_record(
                topic="publish.failed",
                payload={
                    "job_id": str(job.pk),
                    "dataset_id": job.dataset_id,
                    "dataset": job.dataset.path,
                    "organization": job.dataset.organization.slug,
                    "version": job.target_version or job.requested_version or None,
                    "error_code": code,
                    "message": message,
                    "details": _json_safe(details or {}),
                },
                organization=job.dataset.organization,
            )


def _json_safe(details: dict) -> dict:
    """Domain error details as JSON (they may hold dates or other plain values)."""

    return json.loads(json.dumps(details, default=str))


def _requeue(job: PublishJob, store: ObjectStore, exc: StorageUnavailable) -> None:
    """A temporary storage failure: back to the queue, sent again with backoff."""
    try:
        if job.target_key and not DatasetVersion.objects.filter(key=job.target_key).exists():
            store.delete(job.target_key)
    except DomainError:
        pass
    delay = min(300, 5 * 2**job.attempts)
    PublishJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED,
        message=f"Storage failed ({exc.message}); trying again.",
        lease_until=None,
        dispatched_at=timezone.now() + timedelta(seconds=delay),
    )


def publish_jobs_sweep() -> int:
    """Sends again the task of every job the broker lost; returns how many."""
    now = timezone.now()
    stale_dispatch = now - timedelta(seconds=settings.PUBLISH_JOB_REDISPATCH_SECONDS)
    queued = PublishJob.objects.filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale_dispatch),
        status=JobStatus.QUEUED,
    )
    lost = PublishJob.objects.filter(status=JobStatus.RUNNING, lease_until__lt=now)
    sent = 0
    for job_id in list(queued.values_list("pk", flat=True)) + list(
        lost.values_list("pk", flat=True)
    ):
        _dispatch(job_id)
        sent += 1
    return sent
