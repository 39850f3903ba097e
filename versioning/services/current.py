"""Making a version the current one: the one state change that publish, promote and
rollback share.

The current version is what consumers get: the manifest lists it, the API's dataset
detail shows it. Whoever changes it must, in the same transaction and under the
dataset's lock, unset the old one, set the new one, regenerate the manifest, touch the
dataset and record the events and the audit entry, or consumers and subscribers would
disagree about what is current. `version_make_current` does all of that, once.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Exists
from django.utils import timezone

from catalog import events
from catalog.audit import Actor, audit_record
from catalog.exceptions import Conflict
from catalog.models import Dataset
from versioning.manifest import manifest_generate
from versioning.models import DatasetVersion, Manifest, VersionStatus


def version_event_payload(version: DatasetVersion, **extra) -> dict:
    """The fields every event about a version carries (design: add fields, never rename)."""
    return {
        "dataset_id": version.dataset_id,
        "dataset": version.dataset.path,
        "organization": version.dataset.organization.slug,
        "version_id": version.pk,
        "version": version.version,
        "status": version.status,
        "size_bytes": version.size_bytes,
        **extra,
    }


def version_record(
    version: DatasetVersion,
    *,
    actor: Actor,
    action: str,
    topics: tuple[str, ...],
    payload: dict,
    details: dict,
) -> None:
    """A change's events and audit entry, in the change's transaction."""
    for topic in topics:
        events.event_record(
            topic=topic,
            payload=version_event_payload(version, **payload),
            organization=version.dataset.organization,
        )
    audit_record(
        actor=actor,
        action=action,
        obj=version,
        organization=version.dataset.organization,
        details=details,
    )


def version_make_current(
    *,
    version: DatasetVersion,
    previous: DatasetVersion | None,
    actor: Actor,
    action: str,
    topics: tuple[str, ...],
    payload: dict,
    details: dict,
) -> Manifest:
    """Makes the active `version` its dataset's current version in place of `previous`
    (None for a first version), regenerates the organisation's manifest, and records
    `topics` (each with the version's fields, `previous_version` and `payload`) and the
    audit entry `action`. Returns the new manifest.

    Call it inside a transaction, holding the dataset's lock: the caller has checked the
    version may become current. Raises Conflict when the database refuses (another
    version became current meanwhile, or the version is not active).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("version_make_current() runs inside the caller's transaction.")
    dataset = version.dataset
    settable = DatasetVersion.objects.filter(pk=version.pk, status=VersionStatus.ACTIVE)
    try:
        # `previous` is unset only together with a `version` that can be set, so a
        # refusal changes nothing, without a savepoint (two round trips a publish). A
        # refusal by the database aborts the caller's transaction, which rolls back.
        if previous is not None and previous.pk != version.pk:
            DatasetVersion.objects.filter(pk=previous.pk).filter(Exists(settable)).update(
                is_current=False
            )
        if not settable.update(is_current=True):
            raise Conflict(f"{version} is not active, so it cannot be made current.")
    except IntegrityError as exc:
        raise Conflict(f"{version} could not be made current: {exc}") from exc
    version.is_current = True
    if previous is not None:
        previous.is_current = False
    Dataset.objects.filter(pk=dataset.pk).update(updated_at=timezone.now())
    manifest = manifest_generate(organization=dataset.organization)
    version_record(
        version,
        actor=actor,
        action=action,
        topics=topics,
        payload={"previous_version": previous.version if previous else None, **payload},
        details=details,
    )
    return manifest
