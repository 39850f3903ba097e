"""The publish pipeline (design: "The publish path"), its second half: the job that
`versioning.services.intake` queued with the file in storage.

    publish_job_run      in a worker: claim the job, take the profile recorded while
                         the file was uploaded (or, for a job without one, inspect the
                         stored file in one streaming pass), then under the dataset's
                         lock: diff the schema against the current version's, decide
                         the version the diff calls for (or check the publisher's
                         against it and the dataset's compatibility mode), put the file
                         at its immutable key (nothing to do for an upload made straight
                         to it, else one server-side copy), and in one transaction write
                         the version, its changelog and lineage, make it current (unless
                         it is a draft: `version_make_current`), regenerate the manifest
                         and record the events

What the publisher asked for travels as one `PublishOptions` value. Claiming, fencing,
retries and the sweeper live in `versioning.services.jobs`: every change to the job is
fenced by this worker's claim, a failure of infrastructure sends the job back to the
queue with its staged file, and only a verdict on the file (or running out of attempts)
fails it, removing what it staged. Either way the previous version stays current.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.audit import Actor
from catalog.digests import DigestMismatch
from catalog.exceptions import Conflict, DomainError, FileRejected, InvalidInput, NotFound
from catalog.inspection import FileProfile, inspect_stream
from catalog.keys import CONTENT_TYPES, staging_key, version_key
from catalog.leases import LeaseLost
from catalog.locks import dataset_lock
from catalog.models import Dataset
from catalog.storage import ObjectStore, copy_immutable, get_object_store
from versioning.models import (
    DatasetVersion,
    JobOutcome,
    JobStatus,
    PublishJob,
    VersionStatus,
)
from versioning.options import PublishOptions
from versioning.selectors import version_numbers_taken
from versioning.semver import Version, parse_version, version_fields
from versioning.services.changelog import breaking_override_text, changelog_write
from versioning.services.compatibility import compatibility_check, version_for_change
from versioning.services.current import version_make_current, version_record
from versioning.services.diff import SchemaDiff, schema_diff
from versioning.services.jobs import (
    TASK_NAME,
    TEMPORARY_ERRORS,
    Claim,
    KeyReserved,
    ProgressBeat,
    connection_reset,
    job_objects_discard,
    lease_kept,
    publish_job_claim,
    publish_job_fail,
    publish_job_requeue,
    publish_jobs_sweep,
    refusable,
    version_key_held,
)
from versioning.services.lineage import inputs_record

logger = logging.getLogger(__name__)

__all__ = (
    "TASK_NAME",
    "PublishOptions",
    "publish_job_attempt",
    "publish_job_run",
    "publish_job_run_here",
    "publish_jobs_sweep",
)


def current_version(dataset: Dataset) -> DatasetVersion | None:
    return DatasetVersion.objects.filter(dataset=dataset, is_current=True).first()


def publish_job_run(*, job_id) -> PublishJob | None:
    """Runs one publish job to its end, or back to the queue after a temporary failure.
    Safe to call twice: a job that is finished, or held by a live worker, is left alone;
    a worker that loses its claim midway stops and changes nothing."""
    job = publish_job_claim(job_id=job_id)
    if job is None:
        return None
    store = get_object_store()
    if job.attempts > settings.PUBLISH_JOB_MAX_ATTEMPTS:
        publish_job_fail(
            job=job,
            message=f"The publish was interrupted {job.attempts - 1} times (the worker "
            "stopped or a service failed); upload the file again.",
            code="interrupted",
            store=store,
        )
    else:
        publish_job_attempt(job=job, store=store)
    try:
        job.refresh_from_db()
    except TEMPORARY_ERRORS:
        connection_reset()
    return job


def publish_job_run_here(*, job: PublishJob, store: ObjectStore | None = None) -> bool:
    """Runs a job that this process has just queued (and not dispatched) here and now, as
    a worker would: the same claim (`publish_job_claim`), the same attempt
    (`publish_job_attempt`), so its fencing, retries and failures are a worker's. Used for
    small uploads, whose publish costs less than handing them to a worker and following
    them there (see `publish_job_create`'s `publish_now`).

    Only if the dataset's lock is free at once: a request never waits behind another
    publish of the dataset. Returns whether the job was taken care of here (run, or
    found already claimed); False when it should be dispatched to the queue (the lock is
    busy, or the database failed before the claim). A temporary failure during the
    attempt sends the job back to the queue with its backoff, as after a worker's."""
    store = store or get_object_store()
    claimed = None
    try:
        with dataset_lock(job.dataset_id, wait=False) as held:
            if not held:
                return False
            claimed = publish_job_claim(job_id=job.pk)
            if claimed is not None:
                publish_job_attempt(job=claimed, store=store, lock_held=True, staged_here=True)
    except TEMPORARY_ERRORS as exc:
        # Taking or letting go of the lock, or the claim, failed: a job not claimed yet is
        # dispatched by the caller; a claimed one is the sweeper's (its lease runs out).
        logger.warning("Publish job %s could not run in this process: %r", job.pk, exc)
        connection_reset()
        return claimed is not None
    return True


def publish_job_attempt(
    *,
    job: PublishJob,
    store: ObjectStore | None = None,
    lock_held: bool = False,
    staged_here: bool = False,
) -> None:
    """One attempt at a claimed job (`publish_job_claim`), under the claim `job.attempts`
    names, and what its outcome does to the job: success, back to the queue after a
    temporary failure, or failed for good. Nothing at all if the claim is lost.
    `lock_held`: the caller holds the dataset's lock. `staged_here`: this process has
    just written the job's file, so it is not looked for again."""
    store = store or get_object_store()
    try:
        _run(job, store, lock_held=lock_held, staged_here=staged_here)
    except LeaseLost:
        logger.warning("Publish job %s was taken over by another worker; stopping.", job.pk)
    except TEMPORARY_ERRORS as exc:
        logger.warning("Publish job %s hit a temporary failure: %r", job.pk, exc)
        connection_reset()
        try:
            if job.attempts < settings.PUBLISH_JOB_MAX_ATTEMPTS:
                publish_job_requeue(job=job, error=exc)
            else:
                message = getattr(exc, "message", type(exc).__name__)
                publish_job_fail(
                    job=job,
                    message=f"The publish kept failing on a temporary fault: {message}. "
                    "Upload the file again.",
                    code=getattr(exc, "code", "temporary"),
                    store=store,
                )
        except TEMPORARY_ERRORS:
            # Still down: the lease runs out and the sweeper sends the job again.
            logger.warning("Publish job %s left for the sweeper", job.pk)
            connection_reset()
    except DomainError as exc:
        # A version refused for claiming too little keeps its staged file for a while, so
        # a steward can publish it as the needed version in one step (services/retry.py).
        keep = exc.code == "invalid" and "change_type" in exc.details
        publish_job_fail(
            job=job,
            message=exc.message,
            code=exc.code,
            store=store,
            details=exc.details,
            keep_staged=keep and _refused_file_park(job, store),
            # Only a verdict on the file itself (not a lost race) tells subscribers.
            verdict=isinstance(exc, InvalidInput),
        )
    except Exception as exc:
        logger.exception("Publish job %s failed", job.pk)
        publish_job_fail(
            job=job,
            message=f"The publish stopped on an unexpected error ({type(exc).__name__}); "
            "nothing was published. Try again, or tell an administrator if it happens again.",
            code="internal",
            store=store,
        )


def _refused_file_park(job: PublishJob, store: ObjectStore) -> bool:
    """Moves a refused file uploaded straight to its version's key to a staging key,
    where it waits for a republish without holding that version's key; returns whether
    the file is kept (if it cannot be moved, it is removed with the rest of the job)."""
    if job.staging_key != job.target_key:
        return True
    parked = staging_key(org=job.dataset.organization.slug, job_id=str(job.pk), format=job.format)
    try:
        store.copy(job.staging_key, parked)
        Claim.of(job).update(staging_key=parked)
    except (DomainError, LeaseLost, *TEMPORARY_ERRORS):
        logger.warning("Could not keep the refused file of publish job %s", job.pk)
        with contextlib.suppress(DomainError, *TEMPORARY_ERRORS):
            store.delete(parked)
        return False
    job.staging_key = parked
    return True


def _run(
    job: PublishJob, store: ObjectStore, *, lock_held: bool = False, staged_here: bool = False
) -> None:
    dataset = job.dataset
    claim = Claim.of(job)
    ahead = _copy_ahead(job, store)
    try:
        profile = _profile(job, store, claim, staged_here=staged_here)
    finally:
        copied_to = _copy_ahead_finish(job, ahead)
    finished = False
    published_key = ""  # the key of the version this job has just committed
    try:
        lock = contextlib.nullcontext() if lock_held else dataset_lock(dataset.pk)
        with lease_kept(claim) as lease, lock:
            current = current_version(dataset)
            if current is not None and current.sha256 == profile.sha256:
                lease.check()
                _finish_unchanged(job, current)
            else:
                decision = _decide(job, dataset, current, profile)
                key = _target_key(job, dataset, decision.version, store)
                if key != copied_to:
                    _move_to(job, store, key, profile)
                lease.check()
                _commit(job, dataset, current, decision, key, profile)
                published_key = key
            finished = True
    finally:
        # Even if releasing the lock fails (a dropped connection) after the commit: the
        # job is done, so its staged object goes now (or, storage away, by the sweeper).
        if finished:
            job_objects_discard(job=job, store=store, published_key=published_key)


def _profile(
    job: PublishJob, store: ObjectStore, claim: Claim, *, staged_here: bool = False
) -> FileProfile:
    """The file's facts: those recorded while it was uploaded, else (a job without them)
    read from the stored object in one streaming pass, which also checks the SHA-256 the
    publisher sent, if any (DigestMismatch: the job fails and its file is removed)."""
    gone = FileRejected("The uploaded file is no longer in staging; upload it again.")
    if job.profile:
        if not staged_here and not store.exists(job.staging_key):
            raise gone
        return FileProfile.from_json(job.profile)
    try:  # opening is the check that it is there (one request, not two)
        staged = store.open(job.staging_key)
    except NotFound:
        raise gone from None
    with staged as stream:
        profile = inspect_stream(stream, format=job.format, on_progress=ProgressBeat.of(claim))
    if job.expected_sha256 and profile.sha256 != job.expected_sha256:
        raise DigestMismatch(
            f"The file's SHA-256 is {profile.sha256}, not the {job.expected_sha256} that was "
            "sent. Nothing was published; upload the file again.",
            details={"expected_sha256": job.expected_sha256, "actual_sha256": profile.sha256},
        )
    return profile


def _copy_ahead(job: PublishJob, store: ObjectStore) -> Future | None:
    """Starts copying the file to the key the job holds for its most likely version
    (a resumable upload joined at a staging key: `publish_job_create_staged`'s
    `predict`), on a thread, while the file is inspected; None when there is nothing
    to start: the job has a profile (nothing to read, nothing to overlap), holds no
    other key, or an object is already at that key (an earlier attempt's: checked by
    `copy_immutable` as usual). The key is this job's in the database (one holder per
    key), and the staged file is this job's alone, so the copy holds exactly the bytes
    the inspection reads; a decision for another version removes it (`_target_key`)."""
    if job.profile or not job.target_key or job.target_key == job.staging_key:
        return None
    try:
        if store.exists(job.target_key):
            return None
    except DomainError:
        return None  # storage away: the copy after the decision meets it, or retries
    pool = ThreadPoolExecutor(1, thread_name_prefix="copy-ahead")
    try:
        return pool.submit(store.copy, job.staging_key, job.target_key, size=job.bytes_total)
    finally:
        pool.shutdown(wait=False)


def _copy_ahead_finish(job: PublishJob, ahead: Future | None) -> str:
    """Waits for the copy `_copy_ahead` started, so that nothing outlives the attempt;
    returns the key it copied to, or "" (none started, or it failed: the copy after the
    decision is made as for any job, and meets the same fault if storage is away)."""
    if ahead is None:
        return ""
    try:
        ahead.result()
    except Exception as exc:
        logger.warning("Publish job %s: the copy ahead failed (%r)", job.pk, exc)
        return ""
    return job.target_key


def _move_to(job: PublishJob, store: ObjectStore, key: str, profile: FileProfile) -> None:
    """Puts the job's file at its final key: nothing to do for a file uploaded there,
    one server-side copy otherwise. Other bytes already at the key, that no version or
    publish holds, were put there outside the publish path (every upload holds its key
    in the database from its first byte): the job lets go of the key, so that its
    failure never removes them, and waits."""
    try:
        copy_immutable(store, job.staging_key, key, sha256=profile.sha256, size=profile.size_bytes)
    except Conflict:
        Claim.of(job).update(target_version="", target_key="")
        job.target_version, job.target_key = "", ""
        raise KeyReserved(f"{key!r} already holds other bytes.") from None


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
    options = job.options
    taken = version_numbers_taken(dataset_id=dataset.pk, base=base)
    override = ""
    if options.version:
        version = parse_version(options.version)
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
            allow_breaking=options.allow_breaking,
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
        version=version,
        diff=diff,
        draft=options.draft or bool(version.prerelease),
        override=override,
    )


def _target_key(job: PublishJob, dataset: Dataset, version: Version, store: ObjectStore) -> str:
    """The final key, decided once per job and kept on the job, so a re-run after a crash
    finds the same key (and the bytes it already copied there). When a re-run decides
    another version (another publish came first), the object copied for the old one is
    removed, so no object is left that no version refers to."""
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
    if version_key_held(key, job_id=job.pk):
        # Another publish uploaded its file straight to this key, or is copying to it:
        # wait for it to finish (it commits that version, or removes the object).
        raise KeyReserved(f"Another publish of {dataset.path} holds {key!r}.")
    previous = job.target_key
    try:
        with refusable():
            Claim.of(job).update(target_version=str(version), target_key=key)
    except IntegrityError:
        # An upload chose this key between the check above and now (one key, one holder:
        # the table's constraint).
        raise KeyReserved(f"Another publish of {dataset.path} holds {key!r}.") from None
    if (
        previous
        and previous not in (key, job.staging_key)
        and not DatasetVersion.objects.filter(key=previous).exists()
    ):
        store.delete(previous)
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
    """One transaction, under this worker's claim: the version row, its changelog and
    lineage, the job's success, and (unless a draft) the version made current with its
    manifest, events and audit entry. Raises ClaimLost, writing nothing, when another
    worker holds the job now: the job's success, fenced by the claim, is the last
    statement, and when it matches no row the whole transaction rolls back (a check
    first cost a query on every publish for a case a stalled worker alone meets);
    Conflict when the database refuses the version."""
    now = timezone.now()
    version = decision.version
    options = job.options
    claim = Claim.of(job)
    try:
        with transaction.atomic():
            new = DatasetVersion.objects.create(
                dataset=dataset,
                **version_fields(version),
                status=VersionStatus.DRAFT if decision.draft else VersionStatus.ACTIVE,
                is_current=False,
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
                note=options.note,
                parent=current,
                published_by=job.requested_by,
                published_at=now,
            )
            changelog_write(
                version=new, diff=decision.diff, note=options.note, override=decision.override
            )
            inputs_record(version=new, inputs=options.inputs)
            payload = {
                "change_type": new.change_type,
                "breaking": new.breaking,
                "breaking_columns": decision.diff.breaking_columns,
                "sha256": new.sha256,
                "key": new.key,
                "inputs": list(options.inputs),
            }
            actor = Actor(user=job.requested_by, ip_address=job.ip_address, via=job.source)
            details = {
                "job": str(job.pk),
                "sha256": new.sha256,
                "key": new.key,
                "change_type": new.change_type,
                "breaking": new.breaking,
                "breaking_allowed": bool(decision.override),
                "inputs": list(options.inputs),
            }
            if decision.draft:
                version_record(
                    new,
                    actor=actor,
                    action="version.publish_draft",
                    topics=("version.drafted",),
                    payload={"previous_version": current.version if current else None, **payload},
                    details=details,
                )
            else:
                version_make_current(
                    version=new,
                    previous=current,
                    actor=actor,
                    action="version.publish",
                    topics=("version.published",),
                    payload=payload,
                    details=details,
                )
            claim.update(
                status=JobStatus.SUCCEEDED,
                outcome=JobOutcome.PUBLISHED,
                version=new,
                bytes_done=profile.size_bytes,
                message=_published_message(new, current, draft=decision.draft),
                finished_at=now,
                lease_until=None,
            )
    except IntegrityError as exc:
        raise Conflict(
            f"{dataset.path} {version} could not be recorded: another publish got there first."
        ) from exc


def _published_message(new: DatasetVersion, current: DatasetVersion | None, *, draft: bool) -> str:
    kind = f"{new.change_type}{', breaking' if new.breaking else ''}"
    if not draft:
        return (
            f"Published {new.dataset.path} {new.version} ({kind}): {new.row_count:,} rows, "
            f"{new.size_bytes:,} bytes, SHA-256 {new.sha256}."
        )
    after = (
        f"{current.version} stays current until a steward promotes it."
        if current
        else "A steward promotes it to make it current."
    )
    return (
        f"Published {new.dataset.path} {new.version} as a draft ({kind}): "
        f"{new.row_count:,} rows, {new.size_bytes:,} bytes. {after}"
    )


def _finish_unchanged(job: PublishJob, current: DatasetVersion) -> None:
    Claim.of(job).update(
        status=JobStatus.SUCCEEDED,
        outcome=JobOutcome.UNCHANGED,
        version=current,
        bytes_done=current.size_bytes,
        message=f"The file is identical to the current version {current.version} "
        f"(SHA-256 {current.sha256}); no new version was created.",
        finished_at=timezone.now(),
        lease_until=None,
    )
