"""The steward admin as a steward finds it: tables, names, warnings, buttons and formats
that read right."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from catalog import display
from catalog.models import AuditEntry
from tests.versioning.conftest import base_csv
from versioning.models import DatasetVersion, PublishJob, VersionStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def stewards(client, steward):
    client.force_login(steward)
    return client


@pytest.fixture
def versions(dataset, publish_with, steward):
    from catalog.audit import Actor

    first = publish_with(dataset, base_csv(), actor=Actor(user=steward)).version
    second = publish_with(dataset, base_csv(store_id=None), note="Drops `store_id`.").version
    return first, second


def _version_page(version) -> str:
    return reverse("admin:versioning_datasetversion_change", args=[version.pk])


def test_a_versions_schema_is_a_table_and_its_note_markdown_reads_as_code(stewards, versions):
    html = stewards.get(_version_page(versions[1])).content.decode()

    assert '<table class="schema-table">' in html and "&lt;tr&gt;" not in html
    assert "<code>revenue</code>" in html
    assert "Drops <code>store_id</code>." in html
    assert "Removed column <code>store_id</code>" in html


def test_publishers_are_named_and_linked_only_for_who_may_open_the_user_admin(
    stewards, versions, admin_client
):
    steward_view = stewards.get(_version_page(versions[0])).content.decode()
    admin_view = admin_client.get(_version_page(versions[0])).content.decode()

    assert "stella" in steward_view and "/admin/auth/user/" not in steward_view
    assert "/admin/auth/user/" in admin_view


def test_a_breaking_change_reads_as_a_warning_not_a_green_tick(stewards, dataset, versions):
    listed = stewards.get(reverse("admin:versioning_datasetversion_changelist")).content.decode()
    page = stewards.get(_version_page(versions[1])).content.decode()
    dataset_page = stewards.get(
        reverse("admin:catalog_dataset_change", args=[dataset.pk])
    ).content.decode()

    for html in (listed, page, dataset_page):
        assert "⚠ Breaking: store_id" in html
        assert 'class="field-breaking"' not in html


def test_a_version_page_has_the_lifecycle_as_buttons(stewards, dataset, versions, publish_with):
    first, _ = versions
    draft = publish_with(dataset, base_csv(store_id=None, units=[7, 7, 7]), draft=True).version
    lifecycle = "admin:versioning_datasetversion_lifecycle"

    buttons = stewards.get(_version_page(first)).content.decode()
    assert "Roll back to this version" in buttons and "Deprecate…" in buttons
    assert 'id="version-archive"' in buttons and 'id="version-promote"' not in buttons

    stewards.post(reverse(lifecycle, args=[draft.pk, "promote"]))
    draft.refresh_from_db()
    assert draft.is_current

    deprecate = reverse("admin:versioning_datasetversion_deprecate", args=[first.pk])
    form = stewards.get(deprecate).content.decode()
    assert 'placeholder="YYYY-MM-DD"' in form and 'type="date"' not in form
    refused = stewards.post(deprecate, {"message": "Old.", "sunset": "01/03/2030"})
    assert "Enter a valid date." in refused.content.decode()
    stewards.post(deprecate, {"message": "Use 2.0.1.", "sunset": "2030-03-01"})
    first.refresh_from_db()
    assert (first.status, first.sunset_date) == (VersionStatus.DEPRECATED, date(2030, 3, 1))

    stewards.post(reverse(lifecycle, args=[first.pk, "archive"]))
    stewards.post(reverse(lifecycle, args=[first.pk, "restore"]))
    first.refresh_from_db()
    assert first.status == VersionStatus.DEPRECATED
    assert AuditEntry.objects.filter(action__startswith="version.", via="admin").count() >= 4


def test_a_viewer_sees_no_buttons_and_cannot_act(client, viewer, versions):
    first, _ = versions
    client.force_login(viewer)

    page = client.get(_version_page(first)).content.decode()
    client.post(reverse("admin:versioning_datasetversion_lifecycle", args=[first.pk, "archive"]))

    first.refresh_from_db()
    assert "version-archive" not in page and first.status == VersionStatus.ACTIVE


def test_a_refused_version_is_published_as_the_version_it_needs_in_one_click(
    stewards, dataset, versions, publish_with, bucket_keys
):
    from versioning.services import publish_job_run

    job = publish_with(dataset, base_csv(store_id=None, revenue=None), requested_version="2.0.2")
    assert job.status == "failed" and job.staging_key in bucket_keys("acme/staging/")
    page = stewards.get(reverse("admin:versioning_publishjob_change", args=[job.pk]))
    assert 'value="Publish as 3.0.0"' in page.content.decode()

    answer = stewards.post(reverse("admin:versioning_publishjob_republish", args=[job.pk]))

    new = PublishJob.objects.exclude(pk=job.pk).order_by("-created_at").first()
    assert answer["Location"] == reverse("admin:versioning_publishjob_change", args=[new.pk])
    assert (new.requested_version, new.note, new.source) == ("3.0.0", job.note, "admin")
    publish_job_run(job_id=new.pk)
    new.refresh_from_db()
    assert new.status == "succeeded" and new.version.version == "3.0.0"
    job.refresh_from_db()
    assert job.staging_key == "" and bucket_keys("acme/staging/") == []
    again = stewards.post(
        reverse("admin:versioning_publishjob_republish", args=[job.pk]), follow=True
    )
    assert "no longer kept" in again.content.decode()


def test_once_the_file_is_swept_the_offer_opens_the_publish_form_filled_in(
    stewards, dataset, versions, publish_with, bucket_keys, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from versioning.services import refused_staging_sweep

    job = publish_with(
        dataset, base_csv(store_id=None, revenue=None), requested_version="2.0.2", note="Q3"
    )
    PublishJob.objects.filter(pk=job.pk).update(
        finished_at=timezone.now() - timedelta(hours=settings.REFUSED_STAGING_HOURS + 1)
    )

    assert refused_staging_sweep() == 1
    assert bucket_keys("acme/staging/") == [] and refused_staging_sweep() == 0
    page = stewards.get(reverse("admin:versioning_publishjob_change", args=[job.pk]))
    form = stewards.get(
        reverse("admin:catalog_dataset_publish", args=[dataset.pk]), {"retry": str(job.pk)}
    ).content.decode()
    assert "The file is no longer kept" in page.content.decode()
    assert 'value="3.0.0"' in form and "Q3</textarea>" in form


def test_a_viewer_cannot_republish_a_refused_file(client, viewer, dataset, versions, publish_with):
    job = publish_with(dataset, base_csv(store_id=None, revenue=None), requested_version="2.0.2")
    client.force_login(viewer)

    page = client.get(reverse("admin:versioning_publishjob_change", args=[job.pk]))
    client.post(reverse("admin:versioning_publishjob_republish", args=[job.pk]))

    assert "publish-as-needed" not in page.content.decode()
    assert PublishJob.objects.count() == 3


def test_the_version_history_and_djangos_change_history_are_both_reachable(
    stewards, dataset, versions
):
    versions_page = stewards.get(reverse("admin:catalog_dataset_versions", args=[dataset.pk]))
    history = stewards.get(reverse("admin:catalog_dataset_history", args=[dataset.pk]))
    change = stewards.get(reverse("admin:catalog_dataset_change", args=[dataset.pk]))

    assert "Version history of gold/txn_daily" in versions_page.content.decode()
    assert "Change history" in history.content.decode()
    html = change.content.decode()
    assert reverse("admin:catalog_dataset_versions", args=[dataset.pk]) in html
    assert reverse("admin:catalog_dataset_history", args=[dataset.pk]) in html


def test_tags_are_typed_as_words_and_stored_as_a_list(stewards, dataset):
    url = reverse("admin:catalog_dataset_change", args=[dataset.pk])
    form = stewards.get(url).content.decode()
    assert "<textarea" not in form.split('name="tags"')[0].rsplit("<", 1)[-1]

    stewards.post(
        url,
        {
            "title": dataset.title,
            "description": dataset.description,
            "tags": "sales, daily, sales ,",
            "visibility": "private",
            "update_frequency": "daily",
            "compatibility": "major",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )

    dataset.refresh_from_db()
    assert dataset.tags == ["sales", "daily"]
    assert 'value="sales, daily"' in stewards.get(url).content.decode()


def test_counts_sizes_and_dates_read_with_separators_units_and_iso_days(stewards, versions):
    listed = stewards.get(reverse("admin:versioning_datasetversion_changelist")).content.decode()

    assert display.count(826228) == "826,228"
    assert display.size(5 * 1024 * 1024) == "5.0\xa0MB"
    assert display.size_change(-21) == "−21\xa0bytes" and display.size_change(0) == "no change"
    assert "bytes" in listed and versions[0].published_at.strftime("%Y-%m-%d") in listed


def test_a_change_that_only_drops_a_column_says_nothing_of_rows(versions):
    _, second = versions
    texts = [e.text for e in second.changes.all()]

    assert not any("+0 rows" in t for t in texts)


def test_a_rollback_message_does_not_begin_with_the_datasets_path(stewards, dataset, versions):
    answer = stewards.post(
        reverse("admin:catalog_dataset_rollback", args=[dataset.pk]),
        {"to": "1.0.0", "reason": "dashboards broke"},
        follow=True,
    )

    messages = [str(m) for m in answer.context["messages"]]
    assert messages and messages[0].startswith("Rolled back: gold/txn_daily")
    assert DatasetVersion.objects.get(is_current=True).version == "1.0.0"
    assert PublishJob.objects.count() == 2
