"""Publishing through the API: streamed multipart uploads, objects in the bucket, jobs."""

from __future__ import annotations

import io

import pytest

from catalog.models import AuditEntry
from tests.api.conftest import CSV, error_of, multipart, post_multipart
from versioning.models import DatasetVersion, JobStatus, PublishJob
from versioning.services import publish_job_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

URL = "/api/v1/datasets/gold/txn_daily/versions/"
CSV_2 = CSV + b"2024-08-12,ST0003,1.5,true\n"


def test_an_upload_for_a_version_is_streamed_to_its_key_and_answered_with_a_job(
    published, steward, as_user, bucket_keys
):
    client = as_user(steward)
    body = multipart(
        [("version", None, b"2.0.0"), ("note", None, b"More rows"), ("file", "day.csv", CSV_2)]
    )
    response = post_multipart(client, body)
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "queued" and job["requested_version"] == "2.0.0"
    assert response["Location"] == job["url"]
    # The version is known: the file went straight to its key, nothing to staging.
    assert bucket_keys("acme/staging/") == []
    stored = PublishJob.objects.get(pk=job["id"])
    assert stored.target_key.endswith("_v2.0.0.csv") and stored.staging_key == stored.target_key
    assert stored.target_key in bucket_keys("acme/v1/")
    assert AuditEntry.objects.filter(action="version.publish_requested", via="api").exists()

    publish_job_run(job_id=job["id"])
    followed = client.get(job["url"]).json()
    assert followed["status"] == "succeeded", followed["message"]
    assert followed["version"] == "2.0.0"
    version = DatasetVersion.objects.get(is_current=True)
    assert version.note == "More rows" and version.key == stored.target_key
    assert bucket_keys("acme/v1/gold/") == sorted(v.key for v in DatasetVersion.objects.all())
    listed = client.get(URL).json()
    assert [v["version"] for v in listed["results"]] == ["2.0.0", "1.0.0"]
    assert client.get(f"{URL}2.0.0/").json()["parent"] == "1.0.0"


def test_json_naming_an_object_in_the_bucket_publishes_it(published, steward, as_user):
    from catalog.storage import get_object_store

    get_object_store().write("acme/incoming/day.csv", io.BytesIO(CSV_2))
    response = as_user(steward).post(
        URL, {"object_key": "acme/incoming/day.csv", "note": "pipeline"}, format="json"
    )
    assert response.status_code == 202, response.content
    job = PublishJob.objects.get(pk=response.json()["id"])
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message


def test_an_object_of_another_organisation_or_missing_is_404(published, steward, as_user):
    client = as_user(steward)
    for key in ("globex/incoming/day.csv", "acme/incoming/missing.csv", "acme/../globex/x.csv"):
        response = client.post(URL, {"object_key": key}, format="json")
        assert response.status_code == 404, key


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", CSV),
        ("application/xml", b"<csv/>"),
        ("application/x-www-form-urlencoded", b"file=abc"),
    ],
)
def test_an_upload_with_the_wrong_content_type_gets_415(
    published, steward, as_user, content_type, body
):
    response = as_user(steward).generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_an_empty_file_is_refused(published, steward, as_user, stray_uploads):
    response = post_multipart(as_user(steward), multipart([("file", "empty.csv", b"")]))
    assert response.status_code == 400
    assert "empty" in error_of(response)["message"]
    assert stray_uploads() == []


def test_an_upload_over_the_limit_gets_413_and_stores_nothing(
    published, steward, as_user, settings, stray_uploads
):
    settings.MAX_UPLOAD_BYTES = 1000
    client = as_user(steward)
    body = multipart([("file", "big.csv", CSV * 50)])
    response = post_multipart(client, body)
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    # Without a trustworthy Content-Length, the count of streamed bytes stops it.
    response = client.generic(
        "POST",
        URL,
        body,
        content_type="multipart/form-data; boundary=XyZ",
        CONTENT_LENGTH="10",
    )
    assert response.status_code in (400, 413)
    assert stray_uploads() == []
    assert PublishJob.objects.count() == 1  # only the fixture's own publish


def test_a_field_after_the_file_is_refused_before_any_job_exists(
    published, steward, as_user, stray_uploads
):
    body = multipart([("file", "day.csv", CSV_2), ("version", None, b"3.0.0")])
    response = post_multipart(as_user(steward), body)
    assert response.status_code == 400
    assert "before the file" in error_of(response)["message"]
    assert PublishJob.objects.count() == 1  # only the fixture's own publish
    assert stray_uploads() == []


@pytest.mark.parametrize(
    "body",
    [
        b"not multipart at all",
        b'--XyZ\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n--XyZ--\r\n',
        b"",
    ],
)
def test_a_malformed_or_fileless_multipart_body_is_refused(published, steward, as_user, body):
    response = post_multipart(as_user(steward), body)
    assert response.status_code == 400, response.content
    error_of(response)


def test_a_bad_boundary_is_refused(published, steward, as_user):
    response = as_user(steward).generic(
        "POST", URL, b"x", content_type="multipart/form-data; boundary="
    )
    assert response.status_code == 400


def test_a_version_not_above_the_current_one_is_refused_at_once(published, steward, as_user):
    body = multipart([("version", None, b"0.9.0"), ("file", "day.csv", CSV_2)])
    response = post_multipart(as_user(steward), body)
    assert response.status_code == 400
    assert "not above" in error_of(response)["message"]


def test_malformed_json_is_refused(published, steward, as_user):
    response = as_user(steward).generic("POST", URL, b"{oops", content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_a_viewer_gets_403_and_an_outsider_404(published, viewer, outsider, as_user):
    body = multipart([("file", "day.csv", CSV_2)])
    assert post_multipart(as_user(viewer), body).status_code == 403
    assert post_multipart(as_user(outsider), body).status_code == 404
    assert PublishJob.objects.count() == 1  # only the fixture's own publish


def test_a_publish_job_is_visible_to_stewards_of_its_organisation_only(
    published, steward, viewer, outsider, as_user
):
    job = PublishJob.objects.get()
    url = f"/api/v1/publish-jobs/{job.pk}/"
    assert as_user(steward).get(url).status_code == 200
    assert as_user(viewer).get(url).status_code == 404
    assert as_user(outsider).get(url).status_code == 404
    missing = "/api/v1/publish-jobs/00000000-0000-0000-0000-000000000000/"
    assert as_user(steward).get(missing).status_code == 404
    assert as_user(steward).get("/api/v1/publish-jobs/not-a-uuid/").status_code == 404


def test_a_session_upload_is_published_too(published, steward, api):
    api.force_login(steward)
    response = api.post(URL, {"version": "1.5.0", "file": io.BytesIO(CSV_2)}, format="multipart")
    assert response.status_code == 202, response.content
    assert response.json()["requested_version"] == "1.5.0"
