"""Publish jobs as claimed rows: who holds a job, for how long, and what a worker may
still change once it may have lost it.

A worker claims a job with one conditional UPDATE that moves it to `running`, sets a
lease and adds one to `attempts`; the attempt number it gets is its claim. Every later
change the worker makes to the job (progress, the target key, requeue, failure, the
commit) is an UPDATE filtered on that claim, so a worker whose lease ran out while it
was stalled (on S3, on a lock, on a dropped connection) and whose job another worker has
since claimed changes nothing: its UPDATE matches no row, and it stops without touching
the job or the objects the new holder is working with (`ClaimLost`).

Faults follow the design's rule: a failure of infrastructure (storage, the database,
the cache) is temporary, so the job keeps its staged file and goes back to the queue
with exponential backoff and jitter; only a verdict on the file itself, or running out
of attempts, fails it for good, and then its staged object (and any uncommitted final
object it made) is removed, once, by the worker whose claim failed it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, IntegerField, Q, QuerySet, Value
from django.utils import timezone

from catalog import events
from catalog.exceptions import DomainError, StorageUnavailable
from catalog.leases import LeaseKeeper, LeaseLost
from catalog.queue import send_task
from catalog.storage import ObjectStore, get_object_store
from catalog.wakeups import wait_until, wakeup_on_commit
from versioning.models import DatasetVersion, JobStatus, PublishJob

logger = logging.getLogger(__name__)

TASK_NAME = "versioning.run_publish_job"
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)
# A publish in these states holds its keys: its file is on its way, or waits for a
# worker, or is being published.
ACTIVE = (JobStatus.UPLOADING, JobStatus.QUEUED, JobStatus.RUNNING)
# Backoff after the n-th try failed for a temporary reason: 5 s * 2^n (10 s, 20 s, ...),
# at most 5 minutes, times 0.5-1.5 at random so that jobs failed together spread out.
_BACKOFF_BASE = 5
_BACKOFF_CAP = 300
# A client following a job may ask the API to hold its request until the job finishes
# (`publish_job_wait`), up to this many seconds: the worker that finishes a job wakes
# its waiters (`catalog.wakeups`), which costs far less than the full authenticated
# request a client would otherwise send every time it asks again (measured with 20
# devices asking every 50 ms: their requests took more CPU than publishing itself), and
# far less than reading the job's row every 100 ms while it waits (half the web
# processes' CPU in the same measurement).
MAX_WAIT_SECONDS = 30


class ClaimLost(LeaseLost):
    """This worker's claim on a job is gone (its lease ran out and another worker took
    the job, or the job finished): it must stop and change nothing."""


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError, TimeoutError
    except ImportError:  # the embedded mode needs no Redis client
        return ()
    return (ConnectionError, TimeoutError)


class KeyReserved(Exception):  # noqa: N818 - a state, like the errors it sits with
    """The final key a job needs is held by another publish that has not finished (it
    uploaded its file straight to that key): the job waits and tries again."""

    message = "Another publish of the same version is still running"


# Errors of infrastructure that may pass: a job is retried for them, never failed.
TEMPORARY_ERRORS: tuple[type[BaseException], ...] = (
    StorageUnavailable,
    KeyReserved,
    OperationalError,
    InterfaceError,
    ConnectionError,
    *_redis_errors(),
)


def temporary_reason(error: BaseException) -> str:
    """A person's words for a temporary failure."""
    if isinstance(error, StorageUnavailable):
        return f"Storage failed ({error.message})"
    if isinstance(error, KeyReserved):
        return KeyReserved.message
    if isinstance(error, DatabaseError):
        return f"The database connection failed ({type(error).__name__})"
    return f"A service did not answer ({type(error).__name__})"


def refusable() -> contextlib.AbstractContextManager:
    """Around one statement that the database may refuse, with an IntegrityError the
    caller catches: a savepoint when the caller holds a transaction, so that the
    refusal leaves it usable; nothing in autocommit, where the statement stands alone
    (a transaction of its own would add a BEGIN and a COMMIT: two round trips)."""
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


def connection_reset() -> None:
    """Drops this thread's database connection if it is broken, so the next query opens
    a new one (Django would otherwise keep failing on the dead socket)."""
    try:
        connection.close_if_unusable_or_obsolete()
        if connection.connection is not None and not connection.is_usable():
            connection.close()
    except DatabaseError:
        connection.close()


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job: the job and the attempt number it claimed."""

    job_id: object
    attempt: int

    def rows(self) -> QuerySet[PublishJob]:
        """The job, only while it is still this claim's."""
        return PublishJob.objects.filter(
            pk=self.job_id, status=JobStatus.RUNNING, attempts=self.attempt
        )

    def update(self, **fields) -> None:
        """Changes the job under this claim; raises ClaimLost if it is no longer ours.
        Finishing it wakes whoever waits for it, once the change commits."""
        if not self.rows().update(**fields):
            raise ClaimLost(f"Publish job {self.job_id} attempt {self.attempt} lost its claim.")
        if fields.get("status") in FINISHED:
            wakeup_on_commit(_wakeup_name(self.job_id))

    def extend(self) -> None:
        self.update(lease_until=lease_end())

    @classmethod
    def of(cls, job: PublishJob) -> Claim:
        return cls(job_id=job.pk, attempt=job.attempts)


def lease_end():
    return timezone.now() + timedelta(seconds=settings.PUBLISH_JOB_LEASE_SECONDS)


def publish_job_claim(*, job_id) -> PublishJob | None:
    """Takes the job for this worker: a queued one, or a running one whose lease ran out.
    The returned job's `attempts` is this worker's claim (`Claim.of(job)`); None when
    the job is finished or held by a live worker."""
    now = timezone.now()
    claimed = PublishJob.objects.filter(
        Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, lease_until__lt=now),
        pk=job_id,
    ).update(
        status=JobStatus.RUNNING,
        lease_until=lease_end(),
        started_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    return PublishJob.objects.select_related("dataset__organization", "requested_by").get(pk=job_id)


def version_key_held(key: str, *, job_id: object = None, also: tuple[QuerySet, ...] = ()) -> bool:
    """Whether a version's key is published, or held by a publish other than `job_id`
    (uploaded to it, or copying to it, and not finished; or finished with the object
    still to be removed), or by any row of the querysets in `also`. One query."""
    holders = PublishJob.objects.filter(Q(staging_key=key) | Q(target_key=key)).filter(
        Q(status__in=ACTIVE) | Q(cleanup_pending=True)
    )
    if job_id is not None:
        holders = holders.exclude(pk=job_id)
    first, *rest = (
        rows.values_list(Value(1, output_field=IntegerField()))
        for rows in (DatasetVersion.objects.filter(key=key), holders, *also)
    )
    return first.union(*rest, all=True).exists()


def _wakeup_name(job_id) -> str:
    return f"publish-job:{job_id}"


def publish_job_wait(*, job_id, seconds: float) -> bool:
    """Waits until the job is finished (succeeded or failed), at most `seconds` (capped at
    MAX_WAIT_SECONDS); returns whether it is. Reads the job's status when its worker
    says it finished (`Claim.update`), and at least once a second whatever it says."""
    finished = PublishJob.objects.filter(pk=job_id, status__in=FINISHED)
    return wait_until(_wakeup_name(job_id), finished.exists, seconds=min(seconds, MAX_WAIT_SECONDS))


def publish_job_dispatch(job_id) -> None:
    """Sends the job's task (best effort: the sweeper sends it again if this is lost)."""
    if send_task(TASK_NAME, str(job_id)):
        PublishJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            dispatched_at=timezone.now()
        )


class ProgressBeat:
    """An `on_progress` callback: records the bytes done and extends the lease on the job
    rows this process holds (`held`: a claim's, or an upload's reservation), at most every
    `every` seconds (at once on the first call unless `fresh`: the lease was just set),
    then tells `then`, if given. A database error here (a dropped connection) is not the
    file's fault: it is logged, the broken connection closed, and the next beat tries
    again. A hold that is gone stops the work at the next beat (`lost()` is raised)."""

    def __init__(
        self,
        held: QuerySet[PublishJob],
        *,
        lost: Callable[[], Exception],
        every: float = 1.0,
        fresh: bool = False,
        then: Callable[[int], None] | None = None,
    ) -> None:
        self.held, self.lost, self.every, self.then = held, lost, every, then
        self.last = time.monotonic() if fresh else 0.0

    @classmethod
    def of(cls, claim: Claim) -> ProgressBeat:
        return cls(
            claim.rows(),
            lost=lambda: ClaimLost(
                f"Publish job {claim.job_id} attempt {claim.attempt} lost its claim."
            ),
        )

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            try:
                if not self.held.update(bytes_done=done, lease_until=lease_end()):
                    raise self.lost()
            except DatabaseError:
                logger.warning("Could not report the progress of %s", self.held.model.__name__)
                connection_reset()
        if self.then:
            self.then(done)


def lease_kept(claim: Claim) -> LeaseKeeper:
    """Keeps the claim's lease alive from a thread while the worker waits for the
    dataset's lock (another publish may be copying a large file) and copies: neither
    reports progress, and either can outlast a lease, after which the job would look
    abandoned and be run a second time. Check `.check()` before committing."""

    def renew() -> bool:
        return bool(claim.rows().update(lease_until=lease_end()))

    return LeaseKeeper(
        renew, every=settings.PUBLISH_JOB_LEASE_SECONDS / 3, name=f"publish job {claim.job_id}"
    )


def publish_job_requeue(*, job: PublishJob, error: BaseException) -> bool:
    """A temporary failure: the job goes back to the queue under this worker's claim,
    with its staged file (and any final object it copied, which the next attempt reuses
    when its bytes are the same), to be sent again after an exponential backoff with
    jitter. Returns False, touching nothing, if the claim is lost."""
    claim = Claim.of(job)
    delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**job.attempts) * (0.5 + random.random())
    try:
        claim.update(
            status=JobStatus.QUEUED,
            message=f"{temporary_reason(error)}; trying again in {delay:.0f} s.",
            lease_until=None,
            # The sweeper sends a queued job once its dispatch is this old.
            dispatched_at=timezone.now()
            + timedelta(seconds=delay - settings.PUBLISH_JOB_REDISPATCH_SECONDS),
        )
    except ClaimLost:
        return False
    return True


def publish_job_fail(
    *,
    job: PublishJob,
    message: str,
    code: str,
    store: ObjectStore,
    details: dict | None = None,
    keep_staged: bool = False,
    verdict: bool = False,
) -> bool:
    """Fails the job for good under this worker's claim, then removes its staged object
    (unless `keep_staged`: the refused-staging sweep removes it later) and any final
    object it made that no version refers to. `verdict`: the failure is about the file
    itself (unreadable, a refused version), which records `publish.failed` with the
    failure, for subscribers; a fault that merely ran out of retries does not. Returns
    False, touching nothing, if the claim is lost (the job belongs to another worker now)."""
    details = json.loads(json.dumps(details or {}, default=str))
    try:
        with transaction.atomic():
            Claim.of(job).update(
                status=JobStatus.FAILED,
                message=message,
                error_code=code,
                error_details=details,
                finished_at=timezone.now(),
                lease_until=None,
            )
            if verdict:
                dataset = job.dataset
                events.event_record(
                    topic="publish.failed",
                    payload={
                        "dataset_id": dataset.pk,
                        "dataset": dataset.path,
                        "organization": dataset.organization.slug,
                        "job_id": str(job.pk),
                        "version": job.target_version or job.requested_version or None,
                        "error_code": code,
                        "message": message,
                        "details": details,
                        "requested_version": job.requested_version,
                        "source": job.source,
                    },
                    organization=dataset.organization,
                )
    except ClaimLost:
        return False
    job_objects_discard(job=job, store=store, keep_staged=keep_staged)
    return True


def job_objects_discard(
    *, job: PublishJob, store: ObjectStore, keep_staged: bool = False, published_key: str = ""
) -> bool:
    """Removes what a finished job stored that no version row refers to: its staged
    object (unless `keep_staged`), and (if it failed) the final object it copied. A file
    uploaded straight to its version's key is both, and stays once that version is
    recorded. When storage cannot be reached, the job is marked so that the sweeper
    tries again (`cleanup_pending`); returns whether it is done.

    `job` is the row as its worker holds it (claimed, or loaded by the sweeper): its keys
    are the row's, so after a publish this costs one query (which keys are a version's?);
    a job that knows no target reads its keys from its row; and none when its worker has
    just committed the version at `published_key` and the file was uploaded there."""
    try:
        staged, target = job.staging_key, job.target_key
        if not target:
            staged, target = PublishJob.objects.filter(pk=job.pk).values_list(
                "staging_key", "target_key"
            ).first() or (staged, target)
        keys = [key for key in (staged, target) if key and not (keep_staged and key == staged)]
        # The version this job has just committed is a version's, without asking.
        unknown = [key for key in keys if key != published_key]
        published = {published_key} | (
            set(DatasetVersion.objects.filter(key__in=unknown).values_list("key", flat=True))
            if unknown
            else set()
        )
        for key in dict.fromkeys(keys):
            if key not in published:
                store.delete(key)
    except DomainError:
        logger.warning("Could not remove the objects of failed publish job %s yet", job.pk)
        PublishJob.objects.filter(pk=job.pk).update(cleanup_pending=True)
        job.cleanup_pending = True
        return False
    if job.cleanup_pending:
        PublishJob.objects.filter(pk=job.pk, cleanup_pending=True).update(cleanup_pending=False)
        job.cleanup_pending = False
    return True


def reservations_expired_fail(store: ObjectStore | None = None) -> int:
    """Fails every upload whose process stopped renewing its hold on the key (the web
    process or command died, or stalled past its lease) and removes what it stored;
    returns how many. The upload, if it is still alive after all, finds its row failed
    when it finishes and keeps nothing (`intake`)."""
    expired = PublishJob.objects.filter(status=JobStatus.UPLOADING, lease_until__lt=timezone.now())
    failed = 0
    for job in expired.select_related("dataset")[:100]:
        taken = PublishJob.objects.filter(
            pk=job.pk, status=JobStatus.UPLOADING, lease_until__lt=timezone.now()
        ).update(
            status=JobStatus.FAILED,
            message="The upload stopped before the whole file arrived; nothing was "
            "published. Send the file again.",
            error_code="interrupted",
            finished_at=timezone.now(),
            lease_until=None,
        )
        if taken:
            failed += 1
            job_objects_discard(job=job, store=store or get_object_store())
    return failed


def publish_jobs_sweep() -> int:
    """Sends again the task of every job the broker lost (a queued job not started for
    PUBLISH_JOB_REDISPATCH_SECONDS) and of every running job whose worker went silent
    (its lease ran out); returns how many. Also fails the uploads whose process went
    silent (`reservations_expired_fail`), and removes the objects of jobs that finished
    while storage was unreachable."""
    reservations_expired_fail()
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
        publish_job_dispatch(job_id)
        sent += 1
    leftovers = PublishJob.objects.filter(
        status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED), cleanup_pending=True
    )
    if leftovers.exists():
        store = get_object_store()
        for job in leftovers.order_by("finished_at")[:100]:
            if not job_objects_discard(job=job, store=store):
                break  # storage is still away: next sweep
    return sent
