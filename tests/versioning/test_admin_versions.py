"""The steward admin for versions: history, side-by-side diff, rollback page, and the
promote, deprecate, archive and restore actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from catalog.models import AuditEntry
from tests.versioning.conftest import base_csv
from versioning.manifest import manifest_latest
from versioning.models import DatasetRollback, DatasetVersion, VersionStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(dataset, publish_with):
    first = publish_with(dataset, base_csv()).version
    second = publish_with(dataset, base_csv(store_id=None), note="Stores moved.").version
    draft = publish_with(dataset, base_csv(store_id=None, units=[5, 5, 5]), draft=True).version
    return first, second, draft


@pytest.fixture
def stewards(client, steward):
    client.force_login(steward)
    return client


def test_the_history_lists_versions_with_change_breaking_flag_and_deltas(
    stewards, dataset, versions, django_assert_max_num_queries
):
    url = reverse("admin:catalog_dataset_versions", args=[dataset.pk])
    with django_assert_max_num_queries(12):
        page = stewards.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Version history of gold/txn_daily" in html
    for text in ("1.0.0", "2.0.0", "2.0.1", "(current)", "Draft", "Major", "store_id", "Initial"):
        assert text in html
    assert "+0" not in html or "—" in html


def test_the_diff_page_shows_two_versions_side_by_side(stewards, dataset, versions):
    url = reverse("admin:catalog_dataset_diff", args=[dataset.pk])
    page = stewards.get(url, {"from": "1.0.0", "to": "2.0.0"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "removed (breaking)" in html
    assert "<code>store_id</code>" in html
    assert "breaking</b> for store_id" in html
    missing = stewards.get(url, {"from": "1.0.0", "to": "7.0.0"})
    assert "has no version" in missing.content.decode()


def test_the_rollback_page_rolls_back_with_a_reason(stewards, dataset, versions):
    first, second, _ = versions
    url = reverse("admin:catalog_dataset_rollback", args=[dataset.pk])
    form = stewards.get(url, {"to": "1.0.0"})
    assert 'value="1.0.0" selected' in form.content.decode()
    refused = stewards.post(url, {"to": "1.0.0", "reason": ""})
    assert refused.status_code == 200 and not DatasetRollback.objects.exists()
    done = stewards.post(url, {"to": "1.0.0", "reason": "2.0.0 broke the dashboards"})
    assert done.status_code == 302
    body = manifest_latest(organization=dataset.organization).body
    assert body["datasets"]["gold/txn_daily"]["sha256"] == first.sha256
    rollback = DatasetRollback.objects.get()
    assert (rollback.reason, rollback.actor.username) == ("2.0.0 broke the dashboards", "stella")
    assert AuditEntry.objects.get(action="version.rollback").via == "admin"


def test_a_viewer_cannot_roll_back(client, viewer, dataset, versions):
    client.force_login(viewer)
    url = reverse("admin:catalog_dataset_rollback", args=[dataset.pk])
    client.post(url, {"to": "1.0.0", "reason": "x"})
    assert not DatasetRollback.objects.exists()


def act(client, action, versions, **data):
    url = reverse("admin:versioning_datasetversion_changelist")
    return client.post(
        url, {"action": action, ACTION_CHECKBOX_NAME: [v.pk for v in versions], **data}
    )


def test_the_promote_action_makes_the_draft_current(stewards, versions):
    _, _, draft = versions
    act(stewards, "promote", [draft])
    assert DatasetVersion.objects.get(pk=draft.pk).is_current


def test_the_archive_and_restore_actions_report_refusals(stewards, versions):
    first, second, _ = versions
    response = act(stewards, "archive", [first, second])
    assert DatasetVersion.objects.get(pk=first.pk).status == VersionStatus.ARCHIVED
    assert DatasetVersion.objects.get(pk=second.pk).status == VersionStatus.ACTIVE
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("current version" in m for m in messages)
    act(stewards, "restore", [first])
    assert DatasetVersion.objects.get(pk=first.pk).status == VersionStatus.ACTIVE


def test_the_deprecate_action_asks_for_a_message_and_a_sunset(stewards, versions):
    first, _, _ = versions
    page = act(stewards, "deprecate", [first])
    assert page.status_code == 200 and b"Deprecate" in page.content
    sunset = (timezone.localdate() + timedelta(days=30)).isoformat()
    act(stewards, "deprecate", [first], apply="1", message="Use 2.0.0.", sunset=sunset)
    version = DatasetVersion.objects.get(pk=first.pk)
    assert (version.status, version.deprecation_message) == (VersionStatus.DEPRECATED, "Use 2.0.0.")


def test_the_roll_back_action_opens_the_rollback_page_for_that_version(stewards, dataset, versions):
    response = act(stewards, "roll_back_to", [versions[0]])
    assert response.status_code == 302
    assert response["Location"].endswith(
        reverse("admin:catalog_dataset_rollback", args=[dataset.pk]) + "?to=1.0.0"
    )


def test_a_version_page_shows_its_changelog_lineage_and_diff_link(stewards, versions):
    _, second, _ = versions
    page = stewards.get(reverse("admin:versioning_datasetversion_change", args=[second.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Removed column `store_id` (string)." in html
    assert "Stores moved." in html
    assert "compare side by side" in html
    assert "built from" in html


def test_the_publish_page_takes_inputs_draft_and_the_breaking_override(stewards, dataset, versions):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from versioning.models import PublishJob

    url = reverse("admin:catalog_dataset_publish", args=[dataset.pk])
    stewards.post(
        url,
        {
            "file": SimpleUploadedFile("day.csv", base_csv(units=[1, 1, 1]), "text/csv"),
            "version": "2.1.0",
            "inputs": "",
            "draft": "on",
            "allow_breaking": "on",
        },
    )
    job = PublishJob.objects.latest("created_at")
    assert (job.requested_version, job.draft, job.allow_breaking) == ("2.1.0", True, True)
