"""Rollback: make another published version of a dataset current again, in seconds,
losing nothing.

Nothing is copied and nothing is deleted: every version's object stays at its immutable
key, so a rollback is one short transaction that moves `is_current`, regenerates the
manifest (which then lists the target's key and SHA-256 again), keeps the key of the
manifest that was in force before (its immutable history copy is the backup), and
records `version.rolled_back` for subscribers. Rolling forward again is a rollback too.
"""

from __future__ import annotations

from django.db import transaction

from catalog.audit import Actor
from catalog.exceptions import InvalidInput
from catalog.locks import dataset_lock
from catalog.models import Dataset
from catalog.services import ensure_steward
from versioning.manifest import manifest_latest
from versioning.models import DatasetRollback, DatasetVersion, VersionStatus
from versioning.services.changelog import version_get
from versioning.services.current import version_make_current

MAX_REASON = 2000


def dataset_rollback(
    *, dataset: Dataset, to: DatasetVersion | str, reason: str, actor: Actor
) -> DatasetRollback:
    """Makes `to` (a version of `dataset`, or its number) the current version.

    Raises InvalidInput without a reason, NotFound for an unknown version, InvalidInput
    when `to` is already current, archived or deprecated (restore it first) or a draft
    (promote it instead), Forbidden for a non-steward.
    """
    ensure_steward(actor=actor, organization=dataset.organization)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give a reason for the rollback; subscribers and the audit see it.")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"The reason is at most {MAX_REASON} characters.")
    if isinstance(to, DatasetVersion):
        if to.dataset_id != dataset.pk:
            raise InvalidInput(f"{to} is not a version of {dataset.path}.")
        target_id = to.pk
    else:
        target_id = version_get(dataset=dataset, version=to).pk
    with dataset_lock(dataset.pk), transaction.atomic():
        target = (
            DatasetVersion.objects.select_for_update(of=("self",))
            .select_related("dataset__organization")
            .get(pk=target_id)
        )
        current = (
            DatasetVersion.objects.select_for_update()
            .filter(dataset=dataset, is_current=True)
            .first()
        )
        _check_target(target, current)
        backup = manifest_latest(organization=dataset.organization)
        user = actor.user if getattr(actor.user, "pk", None) else None
        rollback = DatasetRollback.objects.create(
            dataset=dataset,
            from_version=current,
            to_version=target,
            reason=reason,
            actor=user,
            actor_name=user.get_username() if user else "",
            backup_manifest_key=backup.key if backup else "",
        )
        facts = {
            "from_version": current.version,
            "to_version": target.version,
            "reason": reason,
            "backup_manifest_key": rollback.backup_manifest_key,
        }
        rollback.manifest = version_make_current(
            version=target,
            previous=current,
            actor=actor,
            action="version.rollback",
            topics=("version.rolled_back",),
            payload={
                "rollback_id": rollback.pk,
                "sha256": target.sha256,
                "key": target.key,
                **facts,
            },
            details=facts,
        )
        rollback.save(update_fields=["manifest"])
    return rollback


def _check_target(target: DatasetVersion, current: DatasetVersion | None) -> None:
    if current is None:
        raise InvalidInput(f"{target.dataset.path} has no current version to roll back from.")
    if target.pk == current.pk:
        raise InvalidInput(f"{target.version} is already the current version.")
    if target.status == VersionStatus.ARCHIVED:
        raise InvalidInput(f"{target} is archived: restore it first, then roll back to it.")
    if target.status == VersionStatus.DEPRECATED:
        raise InvalidInput(f"{target} is deprecated: restore it first, then roll back to it.")
    if target.status == VersionStatus.DRAFT:
        raise InvalidInput(f"{target} is a draft that was never current: promote it instead.")


def rollbacks_of(*, dataset: Dataset):
    """The dataset's rollbacks, newest first, with their versions and who made them."""
    return DatasetRollback.objects.filter(dataset=dataset).select_related(
        "from_version", "to_version", "actor"
    )
