"""The lifecycle of a version, and the steward actions that move it.

    draft ──promote──> active (current) ──(another becomes current)──> active
                          │                                             │
                          └────────────── deprecate (message, sunset) ──┤
    archive: draft, active or deprecated (never the current one) ──> archived
    restore: archived ──> what it was before;  deprecated ──> active

`is_current` marks the one version consumers get (the manifest lists it); the database
allows one per dataset, and only an active one. Older published versions stay active
without being current, so a rollback to them is one step. A version's bytes are never
deleted, whatever its status; an archived one may only be downloaded by stewards.

Every transition takes the dataset's lock (the one publishes take, so a promotion and a
publish never interleave), checks where the version stands, and in one transaction
changes it, writes the audit entry and records a domain event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django.db import transaction
from django.utils import timezone

from catalog.audit import Actor
from catalog.exceptions import Forbidden, InvalidInput
from catalog.locks import dataset_lock
from catalog.selectors import user_can_steward
from catalog.services import ensure_steward
from catalog.validators import has_control_characters
from versioning.models import ChangeKind, DatasetVersion, VersionStatus
from versioning.semver import Version
from versioning.services.changelog import breaking_override_text, changelog_write
from versioning.services.compatibility import compatibility_check
from versioning.services.current import version_make_current, version_record
from versioning.services.diff import schema_diff

MAX_MESSAGE = 2000


def _transition(
    *, version: DatasetVersion, actor: Actor, change: Callable[[DatasetVersion], dict]
) -> DatasetVersion:
    """Runs `change` on a fresh, locked copy of the version: under the dataset's lock and
    in one transaction. `change` checks, saves, and records its events and audit entry
    (`version_record`)."""
    ensure_steward(actor=actor, organization=version.dataset.organization)
    with dataset_lock(version.dataset_id), transaction.atomic():
        locked = (
            DatasetVersion.objects.select_for_update(of=("self",))
            .select_related("dataset__organization", "parent")
            .get(pk=version.pk)
        )
        change(locked)
    return locked


def _current_of(version: DatasetVersion) -> DatasetVersion | None:
    return (
        DatasetVersion.objects.filter(dataset_id=version.dataset_id, is_current=True)
        .exclude(pk=version.pk)
        .first()
    )


def version_promote(
    *, version: DatasetVersion, actor: Actor, allow_breaking: bool = False
) -> DatasetVersion:
    """Makes a draft the current version: it becomes active, the manifest lists it.

    The draft was classified against the version current when it was published; if
    another version became current since, it is classified again against that one (its
    parent, diff and changelog follow) and checked against the dataset's compatibility
    mode, where `allow_breaking` plays the part it plays in a publish.

    Raises InvalidInput when the version is not a draft (an archived one must be restored
    first) or its number is not above the current version's, Forbidden for a
    non-steward. Records `version.promoted` and `version.published`.
    """

    def change(v: DatasetVersion) -> None:
        if v.status == VersionStatus.ARCHIVED:
            raise InvalidInput(
                f"{v} is archived: restore it first, then promote it."
                if v.status_before_archive == VersionStatus.DRAFT
                else f"{v} is archived and was never a draft: restore it, or roll back to it."
            )
        if v.status != VersionStatus.DRAFT:
            raise InvalidInput(f"{v} is {v.status}, not a draft: only drafts are promoted.")
        current = _current_of(v)
        if current is not None and Version.parse(v.version) <= Version.parse(current.version):
            raise InvalidInput(
                f"{v.version} is now below the current version {current.version} of "
                f"{v.dataset.path}: publish the file again with a higher version, or roll "
                "back instead."
            )
        rebased = (current.pk if current else None) != v.parent_id
        override = ""
        diff = None
        if rebased:
            diff = schema_diff(
                old=current.schema if current else None,
                new=v.schema,
                old_rows=current.row_count if current else None,
                new_rows=v.row_count,
                old_size=current.size_bytes if current else None,
                new_size=v.size_bytes,
                base_version=current.version if current else None,
                target_version=v.version,
            )
            claim = compatibility_check(
                dataset_path=v.dataset.path,
                mode=v.dataset.compatibility,
                diff=diff,
                base=Version.parse(current.version) if current else None,
                candidate=Version.parse(v.version),
                allow_breaking=allow_breaking,
            )
            if claim:
                who = actor.user.get_username() if getattr(actor.user, "pk", None) else ""
                override = breaking_override_text(
                    claim=claim, columns=diff.breaking_columns, who=who
                )
            elif v.changes.filter(kind=ChangeKind.BREAKING_ALLOWED).exists() and diff.breaking:
                # The publisher's override still stands for the same breaking columns.
                override = v.changes.filter(kind=ChangeKind.BREAKING_ALLOWED).first().text
            v.parent = current
            v.diff = diff.as_dict()
            v.change_type = diff.change_type
            v.breaking = diff.breaking
        v.status = VersionStatus.ACTIVE
        v.save(update_fields=["status", "parent", "diff", "change_type", "breaking"])
        if diff is not None:
            changelog_write(version=v, diff=diff, note=v.note, override=override)
        previous = current.version if current else None
        version_make_current(
            version=v,
            previous=current,
            actor=actor,
            action="version.promote",
            topics=("version.promoted", "version.published"),
            payload={
                "change_type": v.change_type,
                "breaking": v.breaking,
                "sha256": v.sha256,
                "key": v.key,
                "promoted": True,
            },
            details={"previous_version": previous, "rebased": rebased},
        )

    return _transition(version=version, actor=actor, change=change)


def version_deprecate(
    *, version: DatasetVersion, message: str, sunset: date, actor: Actor
) -> DatasetVersion:
    """Marks a published, non-current version deprecated: clients that still read it are
    told `message` (API responses carry Deprecation and Sunset headers) until `sunset`.
    Deprecating again updates the message and the date.

    Raises InvalidInput for an empty message, a sunset in the past, the current version
    (make another one current first), a draft or an archived version.
    """
    message = (message or "").strip()
    if not message:
        raise InvalidInput("Say why the version is deprecated and what to use instead.")
    if len(message) > MAX_MESSAGE:
        raise InvalidInput(f"The deprecation message is at most {MAX_MESSAGE} characters.")
    if has_control_characters(message):
        raise InvalidInput(
            "The deprecation message must be one line without control characters: clients "
            "get it in an HTTP header."
        )
    if not isinstance(sunset, date):
        raise InvalidInput("The sunset date is a day, e.g. 2025-03-31.")
    if sunset < timezone.localdate():
        raise InvalidInput(f"The sunset date {sunset:%Y-%m-%d} is in the past.")

    def change(v: DatasetVersion) -> None:
        if v.is_current:
            raise InvalidInput(
                f"{v} is the current version: publish or roll back to another version before "
                "deprecating it."
            )
        if v.status not in (VersionStatus.ACTIVE, VersionStatus.DEPRECATED):
            raise InvalidInput(f"{v} is {v.status}: only published versions are deprecated.")
        was = v.status
        v.status = VersionStatus.DEPRECATED
        v.deprecation_message = message
        v.sunset_date = sunset
        v.deprecated_at = timezone.now()
        v.save(update_fields=["status", "deprecation_message", "sunset_date", "deprecated_at"])
        facts = {"message": message, "sunset": sunset.isoformat(), "previous_status": was}
        version_record(
            v,
            actor=actor,
            action="version.deprecate",
            topics=("version.deprecated",),
            payload=facts,
            details=facts,
        )

    return _transition(version=version, actor=actor, change=change)


def version_archive(*, version: DatasetVersion, actor: Actor) -> DatasetVersion:
    """Archives a version that is not current: it stays stored and listed, only stewards
    may download it, and `version_restore` brings it back. Raises InvalidInput for the
    current version or one already archived."""

    def change(v: DatasetVersion) -> None:
        if v.is_current:
            raise InvalidInput(
                f"{v} is the current version: publish or roll back to another version before "
                "archiving it."
            )
        if v.status == VersionStatus.ARCHIVED:
            raise InvalidInput(f"{v} is already archived.")
        was = v.status
        v.status_before_archive = was
        v.status = VersionStatus.ARCHIVED
        v.archived_at = timezone.now()
        v.save(update_fields=["status", "status_before_archive", "archived_at"])
        version_record(
            v,
            actor=actor,
            action="version.archive",
            topics=("version.archived",),
            payload={"previous_status": was},
            details={"previous_status": was},
        )

    return _transition(version=version, actor=actor, change=change)


def version_restore(*, version: DatasetVersion, actor: Actor) -> DatasetVersion:
    """Undoes an archive (back to the status the version had: draft, active or
    deprecated) or a deprecation (back to active, message and sunset cleared). Raises
    InvalidInput for any other version."""

    def change(v: DatasetVersion) -> None:
        was = v.status
        if v.status == VersionStatus.ARCHIVED:
            v.status = v.status_before_archive or VersionStatus.ACTIVE
            v.status_before_archive = ""
            v.archived_at = None
        elif v.status == VersionStatus.DEPRECATED:
            v.status = VersionStatus.ACTIVE
            v.deprecation_message = ""
            v.sunset_date = None
            v.deprecated_at = None
        else:
            raise InvalidInput(
                f"{v} is {v.status}: only archived or deprecated versions are restored."
            )
        v.save(
            update_fields=[
                "status",
                "status_before_archive",
                "archived_at",
                "deprecation_message",
                "sunset_date",
                "deprecated_at",
            ]
        )
        version_record(
            v,
            actor=actor,
            action="version.restore",
            topics=("version.restored",),
            payload={"previous_status": was},
            details={"previous_status": was, "status": v.status},
        )

    return _transition(version=version, actor=actor, change=change)


# --- What the API needs about a version's state ---------------------------------------


def version_download_check(*, version: DatasetVersion, user) -> None:
    """Raises Forbidden unless `user` may download `version`: archived versions and
    drafts are for the organisation's stewards only. (Whether the user may see the
    dataset at all is the caller's visibility check.)"""
    if version.status not in (VersionStatus.ARCHIVED, VersionStatus.DRAFT):
        return
    signed_in = user is not None and getattr(user, "is_authenticated", False)
    if signed_in and (user.is_superuser or user_can_steward(user, version.dataset.organization)):
        return
    raise Forbidden(
        f"{version} is {version.status}: only stewards of {version.dataset.organization.slug} "
        "may download it."
    )


def version_deprecation(*, version: DatasetVersion) -> dict | None:
    """For a deprecated version, the response headers and message the API sends with it
    (Deprecation: RFC 9745, Sunset: RFC 8594); None for any other version."""
    if version.status != VersionStatus.DEPRECATED or version.sunset_date is None:
        return None
    from datetime import UTC, datetime, time

    from django.utils.http import http_date

    deprecated_at = version.deprecated_at or timezone.now()
    sunset = datetime.combine(version.sunset_date, time.min, tzinfo=UTC)
    return {
        "headers": {
            "Deprecation": f"@{int(deprecated_at.timestamp())}",
            "Sunset": http_date(sunset.timestamp()),
        },
        "message": version.deprecation_message,
        "sunset": version.sunset_date.isoformat(),
    }
