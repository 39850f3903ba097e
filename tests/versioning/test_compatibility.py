"""Versions follow the schema diff: the publish pipeline classifies each file against the
current version and checks the publisher's version against it and the dataset's mode."""

from __future__ import annotations

import pytest

from catalog.audit import Actor
from catalog.exceptions import InvalidInput
from catalog.models import Compatibility, DomainEvent
from catalog.storage import get_object_store
from tests.versioning.conftest import BASE, base_csv
from versioning.models import ChangeKind, DatasetVersion, JobStatus, VersionStatus
from versioning.services import publish_job_create_from_object, publish_job_run

pytestmark = pytest.mark.django_db


def current(dataset):
    return DatasetVersion.objects.get(dataset=dataset, is_current=True)


@pytest.fixture
def published(dataset, publish_with):
    job = publish_with(dataset, base_csv())
    assert job.status == JobStatus.SUCCEEDED, job.message
    return job.version


def test_publish_refuses_a_minor_bump_for_a_dropped_column_and_names_it(
    dataset, published, publish_with
):
    job = publish_with(dataset, base_csv(store_id=None), requested_version="1.1.0")
    assert job.status == JobStatus.FAILED
    assert "store_id" in job.message
    assert "claims a minor change" in job.message
    assert "2.0.0" in job.message
    assert job.error_details["breaking_columns"] == ["store_id"]
    assert current(dataset) == published


def test_a_dropped_column_is_accepted_as_a_major_version_with_flag_and_changelog(
    dataset, published, publish_with
):
    job = publish_with(
        dataset, base_csv(store_id=None), requested_version="2.0.0", note="Stores moved out."
    )
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = current(dataset)
    assert (version.version, version.change_type, version.breaking) == ("2.0.0", "major", True)
    assert version.parent == published
    assert version.diff["removed"] == [{"name": "store_id", "type": "string"}]
    assert version.diff["breaking_columns"] == ["store_id"]
    entries = list(version.changes.values_list("kind", "column", "breaking"))
    assert (ChangeKind.COLUMN_REMOVED, "store_id", True) in entries
    assert [e.text for e in version.changes.all()][-1] == "Stores moved out."
    assert "`store_id`" in version.changes.get(kind=ChangeKind.COLUMN_REMOVED).text
    event = DomainEvent.objects.filter(topic="version.published").latest("id")
    assert event.payload["breaking"] is True
    assert event.payload["breaking_columns"] == ["store_id"]


@pytest.mark.parametrize(
    "changes, expected, change_type",
    [
        ({"region": ["NCR", "NCR", "Davao"]}, "1.1.0", "minor"),
        ({"units": [4, 5, 6]}, "1.0.1", "patch"),
        ({"store_id": None}, "2.0.0", "major"),
        ({"units": [1.5, 2, 3]}, "1.1.0", "minor"),  # integer widened to float
        ({"revenue": ["a", "b", "c"]}, "2.0.0", "major"),  # float to string
        ({"units": [1, None, 3]}, "2.0.0", "major"),  # nulls where there were none
    ],
)
def test_without_a_version_the_pipeline_takes_the_version_the_diff_calls_for(
    dataset, published, publish_with, changes, expected, change_type
):
    job = publish_with(dataset, base_csv(**changes))
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert (job.version.version, job.version.change_type) == (expected, change_type)
    assert job.version.breaking is (change_type == "major")


def test_the_first_version_is_initial(dataset, published):
    assert (published.version, published.change_type, published.breaking) == (
        "1.0.0",
        "initial",
        False,
    )
    assert published.changes.get().kind == ChangeKind.INITIAL


def test_a_patch_claimed_for_an_added_column_is_refused(dataset, published, publish_with):
    job = publish_with(dataset, base_csv(region=["a", "b", "c"]), requested_version="1.0.1")
    assert job.status == JobStatus.FAILED
    assert "claims a patch change" in job.message and "1.1.0" in job.message


def test_allow_breaking_lets_a_minor_through_and_the_changelog_records_it(
    dataset, published, publish_with, steward
):
    job = publish_with(
        dataset,
        base_csv(store_id=None),
        requested_version="1.1.0",
        allow_breaking=True,
        actor=Actor(user=steward, via="api"),
    )
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = job.version
    assert (version.version, version.change_type, version.breaking) == ("1.1.0", "major", True)
    override = version.changes.get(kind=ChangeKind.BREAKING_ALLOWED)
    assert "stella" in override.text and "`store_id`" in override.text


def test_strict_mode_refuses_breaking_changes_even_with_a_major_bump_or_override(
    dataset, published, publish_with
):
    dataset.compatibility = Compatibility.STRICT
    dataset.save()
    for options in ({}, {"requested_version": "2.0.0"}, {"allow_breaking": True}):
        job = publish_with(dataset, base_csv(store_id=None), **options)
        assert job.status == JobStatus.FAILED
        assert "strict" in job.message and "store_id" in job.message
    added = publish_with(dataset, base_csv(region=["a", "b", "c"]))
    assert added.status == JobStatus.SUCCEEDED and added.version.version == "1.1.0"


def test_mode_none_checks_nothing_but_still_records_the_change(dataset, published, publish_with):
    dataset.compatibility = Compatibility.NONE
    dataset.save()
    job = publish_with(dataset, base_csv(store_id=None), requested_version="1.0.1")
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert (job.version.change_type, job.version.breaking) == ("major", True)


def test_a_pre_release_publishes_as_a_draft_and_leaves_the_current_version(
    dataset, published, publish_with
):
    job = publish_with(dataset, base_csv(store_id=None), requested_version="2.0.0-rc.1")
    assert job.status == JobStatus.SUCCEEDED, job.message
    draft = job.version
    assert (draft.status, draft.is_current, draft.prerelease) == (
        VersionStatus.DRAFT,
        False,
        "rc.1",
    )
    assert current(dataset) == published
    assert "draft" in job.message
    assert DomainEvent.objects.filter(topic="version.drafted").exists()


def test_a_pre_release_that_claims_too_little_is_refused(dataset, published, publish_with):
    job = publish_with(dataset, base_csv(store_id=None), requested_version="1.1.0-rc.1")
    assert job.status == JobStatus.FAILED and "store_id" in job.message


def test_a_draft_can_be_asked_for_without_a_pre_release(dataset, published, publish_with):
    job = publish_with(dataset, base_csv(units=[7, 8, 9]), draft=True)
    assert (job.version.version, job.version.status) == ("1.0.1", VersionStatus.DRAFT)
    assert current(dataset) == published


@pytest.mark.parametrize("version", ["1.0", "v1", "1.0.0.1", "1.0.0-rc.01", "1.0.0+sha.5"])
def test_a_malformed_version_is_refused_before_anything_is_queued(
    dataset, published, publish_with, version
):
    with pytest.raises(InvalidInput, match="version|metadata"):
        publish_with(dataset, base_csv(units=[7, 8, 9]), requested_version=version)


def test_a_duplicate_version_is_refused(dataset, published, publish_with):
    draft = publish_with(dataset, base_csv(units=[7, 8, 9]), requested_version="1.0.1-rc.1")
    assert draft.status == JobStatus.SUCCEEDED
    with pytest.raises(InvalidInput, match="already has a version 1.0.1-rc.1"):
        publish_with(dataset, base_csv(units=[4, 8, 9]), requested_version="1.0.1-rc.1")


@pytest.mark.django_db(transaction=True)
def test_the_first_of_two_publishes_of_one_version_gets_it_and_the_second_fails(
    dataset, published, publish_with
):
    from io import BytesIO

    from versioning.models import JobSource
    from versioning.services import publish_job_create

    queued = publish_job_create(
        dataset=dataset,
        stream=BytesIO(base_csv(units=[4, 5, 6])),
        filename="d.csv",
        actor=Actor.system(via="command"),
        source=JobSource.COMMAND,
        requested_version="1.0.1-rc.1",
    )
    # The first upload went straight to the version's key: a second publish of the same
    # version, although its worker runs first, waits for it (back in the queue).
    second = publish_with(dataset, base_csv(units=[7, 8, 9]), requested_version="1.0.1-rc.1")
    assert second.status == JobStatus.QUEUED, second.message
    assert second.staging_key != queued.staging_key
    first = publish_job_run(job_id=queued.pk)
    assert first.status == JobStatus.SUCCEEDED, first.message
    assert first.version.version == "1.0.1-rc.1"
    second = publish_job_run(job_id=second.pk)
    assert second.status == JobStatus.FAILED
    assert "already has a version 1.0.1-rc.1" in second.message
    assert not get_object_store().exists(second.staging_key)
    assert get_object_store().exists(first.version.key)


def test_after_a_rollback_the_next_version_skips_numbers_already_taken(
    dataset, published, publish_with
):
    from versioning.services import dataset_rollback

    publish_with(dataset, base_csv(region=["a", "b", "c"]))  # 1.1.0
    dataset_rollback(
        dataset=dataset, to="1.0.0", reason="bad region", actor=Actor.system(via="command")
    )
    job = publish_with(dataset, base_csv(region=["x", "y", "z"]))
    assert job.version.version == "1.2.0"
    assert job.version.parent == published


def test_publishing_from_an_object_passes_the_options_on(dataset, published, publish_with):
    import io

    from catalog.storage import get_object_store

    get_object_store().write("acme/incoming/day.csv", io.BytesIO(base_csv(store_id=None)))
    job = publish_job_create_from_object(
        dataset=dataset,
        source_key="acme/incoming/day.csv",
        actor=Actor.system(via="command"),
        requested_version="1.1.0",
        allow_breaking=True,
    )
    job = publish_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.allow_breaking and job.version.breaking


def test_the_base_columns_are_what_the_tests_think(published):
    assert [c["name"] for c in published.schema] == list(BASE)
    assert [c["type"] for c in published.schema] == ["date", "string", "float", "integer"]
