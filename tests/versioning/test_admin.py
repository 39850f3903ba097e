"""The steward admin: scoped to one's organisations, publishing through the upload page."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import AuditEntry, Dataset
from versioning.models import JobStatus, PublishJob
from versioning.services import publish_job_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

CSV = b"day,store,revenue\n2024-08-10,ST1,10.5\n"


@pytest.fixture
def other_dataset(globex, system):
    from catalog.services import dataset_create

    return dataset_create(organization=globex, layer="gold", name="secret_sales", actor=system)


def test_a_steward_sees_only_their_organisations_datasets(client, steward, dataset, other_dataset):
    client.force_login(steward)
    page = client.get(reverse("admin:catalog_dataset_changelist"))
    assert page.status_code == 200
    assert b"txn_daily" in page.content
    assert b"secret_sales" not in page.content
    hidden = client.get(reverse("admin:catalog_dataset_change", args=[other_dataset.pk]))
    assert hidden.status_code in (302, 404)  # the admin redirects to the index for "missing"
    assert b"secret_sales" not in hidden.content


def test_the_dataset_list_costs_a_fixed_number_of_queries(
    client, steward, dataset, publish, django_assert_max_num_queries, acme, system
):
    from catalog.services import dataset_create

    publish(dataset, CSV)
    client.force_login(steward)
    url = reverse("admin:catalog_dataset_changelist")
    client.get(url)
    with django_assert_max_num_queries(12) as few:
        client.get(url)
    for i in range(10):
        dataset_create(organization=acme, layer="silver", name=f"extra_{i}", actor=system)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url)


def test_the_publish_page_streams_the_upload_and_shows_the_job(client, steward, dataset):
    client.force_login(steward)
    url = reverse("admin:catalog_dataset_publish", args=[dataset.pk])
    assert b"Publish a new version of gold/txn_daily" in client.get(url).content

    response = client.post(
        url, {"file": SimpleUploadedFile("day.csv", CSV, "text/csv"), "version": "", "note": "hi"}
    )
    job = PublishJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:versioning_publishjob_change", args=[job.pk])
    assert job.status == JobStatus.QUEUED and job.source == "admin"
    assert AuditEntry.objects.filter(action="version.publish_requested", actor=steward).exists()

    page = client.get(response["Location"])
    assert b'http-equiv="refresh"' in page.content  # follows the job while it runs

    publish_job_run(job_id=job.pk)
    page = client.get(response["Location"])
    assert b"Published gold/txn_daily 1.0.0" in page.content
    assert b'http-equiv="refresh"' not in page.content


def test_the_publish_page_shows_a_refusal_as_a_form_error(client, steward, dataset):
    client.force_login(steward)
    url = reverse("admin:catalog_dataset_publish", args=[dataset.pk])
    response = client.post(url, {"file": SimpleUploadedFile("day.csv", CSV), "version": "one"})
    assert response.status_code == 200
    assert b"is not a semantic version" in response.content
    assert not PublishJob.objects.exists()


def test_the_publish_page_refuses_a_file_whose_sha256_differs(client, steward, dataset):
    import hashlib

    client.force_login(steward)
    url = reverse("admin:catalog_dataset_publish", args=[dataset.pk])
    wrong = "ab" * 32
    response = client.post(url, {"file": SimpleUploadedFile("day.csv", CSV), "sha256": wrong})
    assert response.status_code == 200
    assert wrong.encode() in response.content
    assert hashlib.sha256(CSV).hexdigest().encode() in response.content
    assert not PublishJob.objects.exists()

    right = hashlib.sha256(CSV).hexdigest()
    response = client.post(url, {"file": SimpleUploadedFile("day.csv", CSV), "sha256": right})
    assert response.status_code == 302
    assert PublishJob.objects.count() == 1


def test_a_viewer_cannot_publish_or_change_a_dataset(client, viewer, dataset):
    client.force_login(viewer)
    assert client.get(reverse("admin:catalog_dataset_changelist")).status_code == 200
    response = client.post(
        reverse("admin:catalog_dataset_publish", args=[dataset.pk]),
        {"file": SimpleUploadedFile("day.csv", CSV)},
    )
    assert response.status_code == 302
    assert not PublishJob.objects.exists()
    change = client.post(
        reverse("admin:catalog_dataset_change", args=[dataset.pk]), {"title": "Hacked"}
    )
    assert change.status_code == 403
    assert Dataset.objects.get(pk=dataset.pk).title == "Daily transactions"


def test_the_audit_log_is_readable_but_never_editable(client, steward, dataset):
    entry = AuditEntry.objects.filter(organization=dataset.organization).first()
    client.force_login(steward)
    assert client.get(reverse("admin:catalog_auditentry_changelist")).status_code == 200
    detail = client.get(reverse("admin:catalog_auditentry_change", args=[entry.pk]))
    assert detail.status_code == 200
    assert b'type="submit"' not in detail.content or b"Save" not in detail.content
    assert (
        client.post(
            reverse("admin:catalog_auditentry_change", args=[entry.pk]), {"action": "x"}
        ).status_code
        == 403
    )
    assert (
        client.post(reverse("admin:catalog_auditentry_delete", args=[entry.pk])).status_code == 403
    )


def test_a_steward_registers_a_dataset_only_in_an_organisation_they_steward(
    client, steward, acme, globex
):
    client.force_login(steward)
    data = {
        "layer": "gold",
        "name": "new_one",
        "title": "",
        "description": "",
        "tags": "[]",
        "visibility": "private",
        "update_frequency": "daily",
        "freshness_hours": "",
        "owner": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    }
    add = reverse("admin:catalog_dataset_add")
    refused = client.post(add, {**data, "organization": globex.pk})
    assert refused.status_code == 200 and not Dataset.objects.filter(name="new_one").exists()
    created = client.post(add, {**data, "organization": acme.pk})
    assert created.status_code == 302, created.content[:2000]
    assert Dataset.objects.get(name="new_one").organization == acme


def test_a_viewer_cannot_read_the_audit_log_in_the_admin(client, viewer, dataset):
    entry = AuditEntry.objects.filter(organization=dataset.organization).first()
    client.force_login(viewer)
    assert client.get(reverse("admin:catalog_auditentry_changelist")).status_code == 403
    assert client.get(reverse("admin:catalog_auditentry_change", args=[entry.pk])).status_code in (
        302,
        403,
    )
    assert b"Audit" not in client.get(reverse("admin:index")).content


def test_a_steward_reads_only_their_organisations_audit_entries(
    client, steward, dataset, other_dataset
):
    client.force_login(steward)
    page = client.get(reverse("admin:catalog_auditentry_changelist"))
    assert page.status_code == 200
    assert b"gold/txn_daily" in page.content
    assert b"secret_sales" not in page.content


@pytest.mark.parametrize("object_id", ["abc", "1x", "%C2%B2"])
def test_the_history_page_answers_404_for_an_id_that_is_not_a_number(
    client, steward, dataset, object_id
):
    client.force_login(steward)
    response = client.get(f"/admin/catalog/dataset/{object_id}/history/")
    assert response.status_code == 404


def test_the_dataset_page_shows_what_other_apps_registered_for_it(
    client, steward, dataset, monkeypatch
):
    from catalog import registry

    monkeypatch.setitem(registry._panels, registry.DATASET_ADMIN, {})
    registry.panel_register(
        registry.DATASET_ADMIN,
        registry.Panel(
            name="probe",
            title="Probe",
            template="catalog/tests/panel.html",
            context=lambda request, ds: {"text": f"seen {ds.path}"},
        ),
    )
    client.force_login(steward)
    page = client.get(reverse("admin:catalog_dataset_change", args=[dataset.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="panel-probe"' in html
    assert "<p>seen gold/txn_daily</p>" in html
