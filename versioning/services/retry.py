"""Publishing a refused file again, as the version its change needs.

A publish whose explicit version claims less than its schema change needs ("1.3.0" for a
dropped column) is refused, but its staged file is kept for `REFUSED_STAGING_HOURS`, so
the steward can publish the same bytes as the version the refusal names in one step,
without uploading a multi-GiB file again. The sweeper removes what nobody republished.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from catalog.audit import Actor
from catalog.exceptions import DomainError, InvalidInput
from catalog.models import Compatibility
from catalog.services import ensure_steward
from catalog.storage import get_object_store
from versioning.models import JobSource, JobStatus, PublishJob
from versioning.semver import parse_version, version_next
from versioning.services.intake import publish_job_create_from_object

logger = logging.getLogger(__name__)

_SWEEP_BATCH = 500


def is_version_refusal(error: DomainError) -> bool:
    """True for the compatibility check's refusals, which carry the change they found."""
    return error.code == "invalid" and "change_type" in error.details


def needed_version(job: PublishJob) -> str:
    """For a job refused because its version claimed too little, the version its change
    needs; "" for any other job (and for a breaking change a strict dataset refuses
    whatever the version)."""
    details = job.error_details or {}
    change = details.get("change_type")
    if job.status != JobStatus.FAILED or job.error_code != "invalid" or not change:
        return ""
    if job.dataset.compatibility == Compatibility.STRICT and details.get("breaking_columns"):
        return ""
    base = (details.get("diff") or {}).get("base_version")
    if not base:
        return ""
    try:
        return str(version_next(parse_version(base), change))
    except ValueError:
        return ""


def _is_staging(key: str) -> bool:
    return key.split("/")[1:2] == ["staging"]


def publish_job_file_kept(job: PublishJob) -> bool:
    """Whether the refused job's staged file is still there to publish again."""
    return _is_staging(job.staging_key) and get_object_store().exists(job.staging_key)


def publish_job_republish(*, job: PublishJob, actor: Actor) -> PublishJob:
    """Queues the refused job's staged file again as the version it needs, with the same
    note, inputs and options; returns the new job. The old job's file is then removed.

    Raises InvalidInput when the job was not refused for its version or its file is gone
    (upload it again), Forbidden for anyone but the organisation's stewards.
    """
    ensure_steward(actor=actor, organization=job.dataset.organization)
    version = needed_version(job)
    if not version:
        raise InvalidInput("This job was not refused for its version; publish the file anew.")
    if not publish_job_file_kept(job):
        raise InvalidInput(
            f"The file of this job is no longer kept; upload it again with version {version}."
        )
    new = publish_job_create_from_object(
        dataset=job.dataset,
        source_key=job.staging_key,
        actor=actor,
        source=JobSource.ADMIN if actor.via == "admin" else JobSource.OBJECT,
        requested_version=version,
        note=job.note,
        allow_breaking=job.allow_breaking,
        inputs=job.inputs,
        draft=job.draft,
    )
    _staging_release(job)
    return new


def _staging_release(job: PublishJob) -> None:
    try:
        # A file uploaded straight to a version's key was removed when its job failed,
        # and that key may be another publish's since: only staging keys are removed here.
        if _is_staging(job.staging_key):
            get_object_store().delete(job.staging_key)
    except DomainError:
        # The sweeper tries again: the row keeps the key until the object is gone.
        logger.warning("Could not remove the staged file of job %s", job.pk)
        return
    PublishJob.objects.filter(pk=job.pk, staging_key=job.staging_key).update(staging_key="")


def refused_staging_sweep() -> int:
    """Removes the staged files of failed jobs finished more than `REFUSED_STAGING_HOURS`
    ago (refused ones kept for a republish, interrupted ones); returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.REFUSED_STAGING_HOURS)
    jobs = list(
        PublishJob.objects.filter(status=JobStatus.FAILED, finished_at__lt=cutoff)
        .exclude(staging_key="")
        .only("pk", "staging_key")[:_SWEEP_BATCH]
    )
    for job in jobs:
        _staging_release(job)
    return len(jobs)
