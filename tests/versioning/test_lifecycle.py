"""The lifecycle of versions: draft, active (current), deprecated, archived; every
transition checked, audited and recorded as an event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.audit import Actor
from catalog.exceptions import Forbidden, InvalidInput
from catalog.models import AuditEntry, DomainEvent
from tests.versioning.conftest import base_csv
from versioning.manifest import manifest_latest
from versioning.models import ChangeKind, DatasetVersion, JobStatus, VersionStatus
from versioning.services import (
    version_archive,
    version_deprecate,
    version_deprecation,
    version_download_check,
    version_promote,
    version_restore,
)

pytestmark = pytest.mark.django_db

SUNSET = timezone.localdate() + timedelta(days=90)


@pytest.fixture
def stewarded(steward):
    return Actor(user=steward, via="admin")


@pytest.fixture
def versions(dataset, publish_with):
    """1.0.0, then 1.1.0 (current), then a draft 2.0.0-rc.1 that drops a column."""
    first = publish_with(dataset, base_csv()).version
    second = publish_with(dataset, base_csv(region=["a", "b", "c"])).version
    draft = publish_with(
        dataset, base_csv(store_id=None, region=["a", "b", "c"]), requested_version="2.0.0-rc.1"
    )
    assert draft.status == JobStatus.SUCCEEDED, draft.message
    return first, second, draft.version


def fresh(version):
    return DatasetVersion.objects.get(pk=version.pk)


def test_promoting_a_draft_makes_it_current_and_lists_it_in_the_manifest(
    dataset, versions, stewarded
):
    _, second, draft = versions
    promoted = version_promote(version=draft, actor=stewarded)
    assert (promoted.status, promoted.is_current) == (VersionStatus.ACTIVE, True)
    assert fresh(second).is_current is False and fresh(second).status == VersionStatus.ACTIVE
    entry = manifest_latest(organization=dataset.organization).body["datasets"]["gold/txn_daily"]
    assert (entry["schema_version"], entry["sha256"]) == ("2.0.0-rc.1", draft.sha256)
    topics = set(DomainEvent.objects.values_list("topic", flat=True))
    assert {"version.promoted", "version.published"} <= topics
    assert AuditEntry.objects.filter(action="version.promote", object_id=str(draft.pk)).exists()


def test_a_draft_is_classified_again_when_the_current_version_changed_meanwhile(
    dataset, versions, publish_with, stewarded
):
    _, second, draft = versions
    # 1.2.0 adds a column the draft does not have: promoting the draft now removes it too.
    newer = publish_with(dataset, base_csv(region=["a", "b", "c"], extra=[1, 2, 3])).version
    assert newer.version == "1.2.0"
    promoted = version_promote(version=draft, actor=stewarded)
    assert promoted.parent == newer
    assert promoted.diff["base_version"] == "1.2.0"
    assert promoted.diff["breaking_columns"] == ["store_id", "extra"]
    removed = set(
        promoted.changes.filter(kind=ChangeKind.COLUMN_REMOVED).values_list("column", flat=True)
    )
    assert removed == {"store_id", "extra"}


def test_a_promotion_that_became_breaking_is_checked_like_a_publish(
    dataset, versions, publish_with, stewarded
):
    from catalog.models import Compatibility

    candidate = publish_with(
        dataset, base_csv(region=["a", "b", "c"], extra=[1, 2, 3]), requested_version="1.2.0-rc.1"
    ).version
    assert (candidate.status, candidate.change_type) == (VersionStatus.DRAFT, "minor")
    dataset.compatibility = Compatibility.NONE
    dataset.save()
    publish_with(
        dataset, base_csv(region=["a", "b", "c"], other=[1, 2, 3]), requested_version="1.1.1"
    )
    dataset.compatibility = Compatibility.MAJOR
    dataset.save()

    with pytest.raises(InvalidInput, match="breaking for the columns other"):
        version_promote(version=candidate, actor=stewarded)
    assert fresh(candidate).status == VersionStatus.DRAFT
    promoted = version_promote(version=candidate, actor=stewarded, allow_breaking=True)
    assert (promoted.is_current, promoted.breaking) == (True, True)
    assert "`other`" in promoted.changes.get(kind=ChangeKind.BREAKING_ALLOWED).text


def test_a_promote_of_a_draft_whose_version_is_now_below_the_current_one_is_refused(
    dataset, versions, publish_with, stewarded
):
    _, _, draft = versions
    publish_with(
        dataset, base_csv(store_id=None, region=["x", "y", "z"]), requested_version="2.0.0"
    )
    with pytest.raises(InvalidInput, match="2.0.0-rc.1 is now below the current version 2.0.0"):
        version_promote(version=draft, actor=stewarded)
    assert fresh(draft).status == VersionStatus.DRAFT


def test_only_drafts_are_promoted_and_an_archived_draft_must_be_restored_first(versions, stewarded):
    first, second, draft = versions
    with pytest.raises(InvalidInput, match="not a draft"):
        version_promote(version=first, actor=stewarded)
    version_archive(version=draft, actor=stewarded)
    with pytest.raises(InvalidInput, match="restore it first"):
        version_promote(version=draft, actor=stewarded)
    restored = version_restore(version=draft, actor=stewarded)
    assert restored.status == VersionStatus.DRAFT
    assert version_promote(version=draft, actor=stewarded).is_current


def test_deprecating_stores_the_message_and_sunset_the_api_needs(versions, stewarded):
    first, _, _ = versions
    version = version_deprecate(
        version=first, message="Use 1.1.0: it has regions.", sunset=SUNSET, actor=stewarded
    )
    assert version.status == VersionStatus.DEPRECATED
    assert (version.deprecation_message, version.sunset_date) == (
        "Use 1.1.0: it has regions.",
        SUNSET,
    )
    info = version_deprecation(version=version)
    assert info["message"] == "Use 1.1.0: it has regions."
    assert info["headers"]["Deprecation"].startswith("@")
    assert info["headers"]["Sunset"].endswith("GMT")
    event = DomainEvent.objects.get(topic="version.deprecated")
    assert event.payload["sunset"] == SUNSET.isoformat()
    assert version_deprecation(version=versions[1]) is None


@pytest.mark.parametrize(
    "message, sunset, error",
    [
        ("", SUNSET, "why"),
        ("   ", SUNSET, "why"),
        ("Old.", timezone.localdate() - timedelta(days=1), "in the past"),
    ],
)
def test_deprecating_needs_a_message_and_a_future_sunset(
    versions, stewarded, message, sunset, error
):
    with pytest.raises(InvalidInput, match=error):
        version_deprecate(version=versions[0], message=message, sunset=sunset, actor=stewarded)


def test_the_current_version_cannot_be_deprecated_or_archived(versions, stewarded):
    _, second, _ = versions
    with pytest.raises(InvalidInput, match="current version"):
        version_deprecate(version=second, message="x", sunset=SUNSET, actor=stewarded)
    with pytest.raises(InvalidInput, match="current version"):
        version_archive(version=second, actor=stewarded)
    assert fresh(second).status == VersionStatus.ACTIVE


def test_archive_and_restore_bring_a_version_back_to_what_it_was(versions, stewarded):
    first, _, _ = versions
    version_deprecate(version=first, message="Old.", sunset=SUNSET, actor=stewarded)
    archived = version_archive(version=first, actor=stewarded)
    assert (archived.status, archived.status_before_archive) == (
        VersionStatus.ARCHIVED,
        VersionStatus.DEPRECATED,
    )
    with pytest.raises(InvalidInput, match="already archived"):
        version_archive(version=first, actor=stewarded)
    assert version_restore(version=first, actor=stewarded).status == VersionStatus.DEPRECATED
    undeprecated = version_restore(version=first, actor=stewarded)
    assert (undeprecated.status, undeprecated.deprecation_message) == (VersionStatus.ACTIVE, "")
    with pytest.raises(InvalidInput, match="only archived or deprecated"):
        version_restore(version=first, actor=stewarded)
    actions = list(
        AuditEntry.objects.filter(object_id=str(first.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-4:] == [
        "version.deprecate",
        "version.archive",
        "version.restore",
        "version.restore",
    ]
    topics = list(
        DomainEvent.objects.filter(payload__version_id=first.pk)
        .order_by("id")
        .values_list("topic", flat=True)
    )
    assert topics[-4:] == [
        "version.deprecated",
        "version.archived",
        "version.restored",
        "version.restored",
    ]


def test_archived_versions_stay_stored_and_only_stewards_may_download_them(
    versions, stewarded, steward, viewer, outsider, bucket_keys
):
    first, _, draft = versions
    version_archive(version=first, actor=stewarded)
    assert first.key in bucket_keys("acme/v1/gold/")
    version_download_check(version=fresh(first), user=steward)
    for user in (viewer, outsider, None):
        with pytest.raises(Forbidden, match="only stewards"):
            version_download_check(version=fresh(first), user=user)
        with pytest.raises(Forbidden):
            version_download_check(version=draft, user=user)
    version_download_check(version=versions[1], user=viewer)


def test_transitions_are_for_stewards_of_the_organisation(versions, viewer, outsider):
    for user in (viewer, outsider):
        with pytest.raises(Forbidden):
            version_archive(version=versions[0], actor=Actor(user=user, via="api"))
        with pytest.raises(Forbidden):
            version_promote(version=versions[2], actor=Actor(user=user, via="api"))
    assert fresh(versions[0]).status == VersionStatus.ACTIVE
