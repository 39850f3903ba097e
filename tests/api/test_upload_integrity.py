"""An upload is published only whole: a body cut off before its end, or whose bytes are
not the ones the publisher named (`sha256`, `Content-Digest`), is refused with 400 and
leaves nothing staged and no job."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from django.core.management import CommandError, call_command

from catalog.models import AuditEntry
from tests.api.conftest import CSV, error_of, multipart, post_multipart
from versioning.models import DatasetVersion, PublishJob
from versioning.services import publish_job_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

CSV_2 = CSV + b"2024-08-12,ST0003,1.5,true\n"
URL = "/api/v1/datasets/gold/txn_daily/versions/"


def content_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def assert_nothing_staged(stray_uploads) -> None:
    assert stray_uploads() == []
    # Only the fixture's own publish (by command) exists: no job from the API.
    assert not PublishJob.objects.exclude(source="command").exists()
    assert not AuditEntry.objects.filter(action="version.publish_requested", via="api").exists()


def test_a_body_without_its_closing_boundary_is_refused(published, steward, as_user, stray_uploads):
    whole = multipart([("note", None, b"x"), ("file", "day.csv", CSV_2)])
    cut = whole[: whole.rindex(b"--XyZ--")]
    response = post_multipart(as_user(steward), cut)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "cut off" in error["message"] and "closing boundary" in error["message"]
    assert_nothing_staged(stray_uploads)


def test_a_body_cut_in_the_middle_of_the_file_is_refused(
    published, steward, as_user, stray_uploads
):
    whole = multipart([("file", "day.csv", CSV_2)])
    response = post_multipart(as_user(steward), whole[: len(whole) - 40])
    assert response.status_code == 400, response.content
    assert "cut off" in error_of(response)["message"]
    assert_nothing_staged(stray_uploads)


def test_a_file_whose_sha256_field_does_not_match_is_refused_naming_both(
    published, steward, as_user, stray_uploads
):
    wrong = hashlib.sha256(b"something else").hexdigest()
    body = multipart([("sha256", None, wrong.encode()), ("file", "day.csv", CSV_2)])
    response = post_multipart(as_user(steward), body)
    assert response.status_code == 400, response.content
    error = error_of(response)
    actual = hashlib.sha256(CSV_2).hexdigest()
    assert error["code"] == "digest_mismatch"
    assert wrong in error["message"] and actual in error["message"]
    assert error["details"] == {"expected_sha256": wrong, "actual_sha256": actual}
    assert_nothing_staged(stray_uploads)


def test_a_file_whose_sha256_matches_is_published(published, steward, as_user):
    expected = hashlib.sha256(CSV_2).hexdigest().upper()
    body = multipart([("sha256", None, expected.encode()), ("file", "day.csv", CSV_2)])
    response = post_multipart(as_user(steward), body)
    assert response.status_code == 202, response.content
    publish_job_run(job_id=response.json()["id"])
    assert DatasetVersion.objects.get(is_current=True).sha256 == expected.lower()


def test_a_malformed_sha256_field_is_refused(published, steward, as_user, stray_uploads):
    body = multipart([("sha256", None, b"not-a-digest"), ("file", "day.csv", CSV_2)])
    response = post_multipart(as_user(steward), body)
    assert response.status_code == 400
    assert "sha256" in error_of(response)["details"]
    assert_nothing_staged(stray_uploads)


def test_a_content_digest_of_the_body_is_checked(published, steward, as_user, stray_uploads):
    client = as_user(steward)
    body = multipart([("file", "day.csv", CSV_2)])
    other = content_digest(b"another body")
    response = post_multipart(client, body, HTTP_CONTENT_DIGEST=other)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "digest_mismatch"
    assert other in error["message"] and content_digest(body) in error["message"]
    assert_nothing_staged(stray_uploads)

    # Several algorithms may be listed; sha-256 is the one checked.
    header = f"sha-512=:{base64.b64encode(b'x' * 64).decode()}:, {content_digest(body)}"
    response = post_multipart(client, body, HTTP_CONTENT_DIGEST=header)
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("header", ["sha-256=abc", "sha-256=:YWJj:", "garbage"])
def test_a_malformed_content_digest_is_refused(published, steward, as_user, stray_uploads, header):
    body = multipart([("file", "day.csv", CSV_2)])
    response = post_multipart(as_user(steward), body, HTTP_CONTENT_DIGEST=header)
    assert response.status_code == 400
    assert "Content-Digest" in error_of(response)["message"]
    assert_nothing_staged(stray_uploads)


def test_an_object_key_publish_checks_the_objects_sha256(published, steward, as_user):
    key = DatasetVersion.objects.get(is_current=True).key
    client = as_user(steward)
    wrong = "0" * 64
    response = client.post(URL, {"object_key": key, "sha256": wrong}, format="json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "digest_mismatch"
    assert error["details"]["actual_sha256"] == hashlib.sha256(CSV).hexdigest()
    assert not PublishJob.objects.exclude(source="command").exists()

    right = hashlib.sha256(CSV).hexdigest()
    response = client.post(URL, {"object_key": key, "sha256": right}, format="json")
    assert response.status_code == 202, response.content


def test_the_publish_command_refuses_a_file_whose_sha256_differs(published, tmp_path):
    path = tmp_path / "day.csv"
    path.write_bytes(CSV_2)
    with pytest.raises(CommandError, match="SHA-256"):
        call_command(
            "publish", "gold/txn_daily", str(path), "--sha256", "1" * 64, stdout=io.StringIO()
        )
    assert not PublishJob.objects.exclude(source="command").exists()
    call_command(
        "publish",
        "gold/txn_daily",
        str(path),
        "--sha256",
        hashlib.sha256(CSV_2).hexdigest(),
        "--in-process",
        verbosity=0,
        stdout=io.StringIO(),
    )
    assert DatasetVersion.objects.get(is_current=True).sha256 == hashlib.sha256(CSV_2).hexdigest()
