"""Tokens: made by session or Basic, hashed, scoped, revoked, expiring; device tokens;
and the lock-out after repeated failed passwords."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from catalog.audit import Actor
from catalog.models import ApiToken, AuditEntry
from catalog.services import dataset_create
from catalog.tokens import token_revoke
from tests.api.conftest import CSV, error_of, multipart

pytestmark = pytest.mark.django_db


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_a_signed_in_user_makes_a_token_that_is_shown_once_and_stored_hashed(viewer, api):
    api.force_login(viewer)
    response = api.post("/api/v1/tokens/", {"name": "notebook", "scopes": ["read"]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    raw = body["token"]
    token = ApiToken.objects.get(pk=body["id"])
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    assert body["scopes"] == ["read"] and body["kind"] == "personal"
    assert "token" not in api.get(f"/api/v1/tokens/{token.pk}/").json()
    assert AuditEntry.objects.filter(action="token.create", actor=viewer).exists()


def test_http_basic_makes_a_token_and_the_token_then_works(viewer, dataset, api):
    api.credentials(HTTP_AUTHORIZATION=basic("victor", "pw-victor"))
    response = api.post("/api/v1/tokens/", {"name": "cli", "scopes": ["read"]}, format="json")
    assert response.status_code == 201, response.content
    raw = response.json()["token"]

    for keyword in ("Bearer", "Token"):
        api.credentials(HTTP_AUTHORIZATION=f"{keyword} {raw}")
        assert api.get("/api/v1/datasets/gold/txn_daily/").status_code == 200
    assert ApiToken.objects.get(digest=hashlib.sha256(raw.encode()).hexdigest()).last_used_at


def test_basic_auth_is_accepted_on_the_token_endpoint_only(viewer, dataset, api):
    api.credentials(HTTP_AUTHORIZATION=basic("victor", "pw-victor"))
    response = api.get("/api/v1/datasets/gold/txn_daily/")
    assert response.status_code == 401
    assert "Bearer" in error_of(response)["message"]


def test_a_user_lists_and_revokes_their_own_tokens_only(viewer, outsider, make_token, api):
    make_token(viewer, name="mine")
    theirs = make_token(outsider, name="theirs")
    api.force_login(viewer)
    listed = api.get("/api/v1/tokens/").json()
    assert [t["name"] for t in listed["results"]] == ["mine"]

    other = ApiToken.objects.get(digest=hashlib.sha256(theirs.encode()).hexdigest())
    assert api.delete(f"/api/v1/tokens/{other.pk}/").status_code == 404
    mine = ApiToken.objects.get(name="mine")
    assert api.delete(f"/api/v1/tokens/{mine.pk}/").status_code == 204
    assert api.get("/api/v1/tokens/?active=false").json()["count"] == 1
    assert AuditEntry.objects.filter(action="token.revoke").count() == 1


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "credentials were not provided"),
        ("Bearer", "Malformed"),
        ("Bearer    ", "Malformed"),
        ("Bearer a b", "Malformed"),
        ("Bearer dpt_\u00e9t\u00e9", "Malformed"),
        ("Bearer dpt_doesnotexist", "not valid"),
        ("Bearer not-even-our-format", "not valid"),
        ("Digest abc", "Unsupported"),
    ],
)
def test_missing_and_malformed_tokens_get_401(dataset, api, header, message):
    if header is not None:
        api.credentials(HTTP_AUTHORIZATION=header)
    response = api.get("/api/v1/manifest/")
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] in {"not_authenticated", "authentication_failed"}
    assert message in error["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_stops_working_at_once(viewer, dataset, as_user):
    client = as_user(viewer)
    assert client.get("/api/v1/manifest/").status_code == 200
    token_revoke(token=ApiToken.objects.get(user=viewer), actor=Actor(user=viewer))
    response = client.get("/api/v1/manifest/")
    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


def test_an_expired_token_gets_401(viewer, dataset, as_user):
    client = as_user(viewer)
    assert client.get("/api/v1/manifest/").status_code == 200
    ApiToken.objects.filter(user=viewer).update(expires_at=timezone.now() - timedelta(seconds=1))
    cache.clear()  # the token row is cached for a few seconds; expiry itself is not
    response = client.get("/api/v1/manifest/")
    assert response.status_code == 401
    assert "expired" in error_of(response)["message"]


def test_a_token_of_the_wrong_scope_gets_403(published, steward, as_user):
    reader = as_user(steward, scopes=["read"])
    response = reader.post(
        "/api/v1/datasets/gold/txn_daily/versions/",
        {"file": io.BytesIO(CSV)},
        format="multipart",
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "insufficient_scope"
    publisher = as_user(steward, scopes=["publish"])
    assert publisher.get("/api/v1/datasets/gold/txn_daily/").status_code == 403
    assert publisher.get("/api/v1/tokens/").status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "scopes": ["read"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "x"},
        {"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "x", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00Z"},
        {"name": "x", "scopes": ["read"], "expires_at": "soon"},
    ],
)
def test_bad_token_requests_are_refused_with_400(viewer, api, body):
    api.force_login(viewer)
    response = api.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400, response.content
    error_of(response)


# --- Device tokens ---------------------------------------------------------------------


@pytest.fixture
def device(published, steward, api):
    api.force_login(steward)
    response = api.post(
        "/api/v1/tokens/",
        {"name": "pi-042", "dataset": "gold/txn_daily", "scopes": ["publish"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "device" and body["scopes"] == ["publish"]
    assert body["expires_at"]
    api.logout()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    return api


def test_a_device_token_publishes_to_its_dataset(device):
    from versioning.models import PublishJob
    from versioning.services import publish_job_run

    response = device.post(
        "/api/v1/datasets/gold/txn_daily/versions/",
        {"note": "from the edge", "file": io.BytesIO(CSV + b"2024-08-12,ST0003,1.5,true\n")},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job = PublishJob.objects.get(pk=response.json()["id"])
    assert job.source == "device"
    publish_job_run(job_id=job.pk)
    followed = device.get(response.json()["url"])
    assert followed.status_code == 200
    assert followed.json()["status"] == "succeeded"
    assert followed.json()["version"] not in (None, "1.0.0")


def test_a_device_token_cannot_read_nor_reach_another_dataset(device, acme, system):
    assert device.get("/api/v1/datasets/gold/txn_daily/").status_code == 403
    assert device.get("/api/v1/datasets/gold/txn_daily/rows/").status_code == 403
    assert device.get("/api/v1/manifest/").status_code == 403
    dataset_create(organization=acme, layer="gold", name="other", actor=system)
    response = device.post(
        "/api/v1/datasets/gold/other/versions/", {"file": io.BytesIO(CSV)}, format="multipart"
    )
    assert response.status_code == 404


DEVICE_REFUSED_UPLOADS = {
    "allow_breaking": [("allow_breaking", "true")],
    "a draft": [("draft", "true")],
    "a pre-release": [("version", "2.0.0-rc.1")],
    "inputs from elsewhere": [("inputs", "gold/other")],
}


@pytest.mark.parametrize("case", sorted(DEVICE_REFUSED_UPLOADS))
def test_a_device_token_uploads_only_a_plain_new_file(device, acme, system, case, stray_uploads):
    from versioning.models import PublishJob

    dataset_create(organization=acme, layer="gold", name="other", actor=system)
    fields = [(name, None, value.encode()) for name, value in DEVICE_REFUSED_UPLOADS[case]]
    body = multipart([*fields, ("file", "day.csv", CSV)])
    response = device.generic(
        "POST",
        "/api/v1/datasets/gold/txn_daily/versions/",
        body,
        content_type="multipart/form-data; boundary=XyZ",
    )
    assert response.status_code == 403, response.content
    error = error_of(response)
    assert error["code"] == "forbidden"
    assert "device token may only upload new files" in error["message"]
    assert not PublishJob.objects.exclude(source="command").exists()
    assert stray_uploads() == []


def test_a_device_token_cannot_publish_an_object_already_in_the_bucket(device, published):
    from versioning.models import DatasetVersion, PublishJob

    key = DatasetVersion.objects.get(dataset=published).key
    response = device.post(
        "/api/v1/datasets/gold/txn_daily/versions/", {"object_key": key}, format="json"
    )
    assert response.status_code == 403
    assert "object already in the bucket" in error_of(response)["message"]
    assert not PublishJob.objects.exclude(source="command").exists()


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("rollback/", {"to": "1.0.0", "reason": "x"}),
        ("versions/1.0.0/promote/", {}),
        ("versions/1.0.0/deprecate/", {"message": "old", "sunset": "2030-01-01"}),
        ("versions/1.0.0/archive/", {}),
        ("versions/1.0.0/restore/", {}),
    ],
)
def test_a_device_token_is_refused_every_steward_action(device, published, action, body):
    from versioning.models import DatasetVersion

    response = device.post(f"/api/v1/datasets/gold/txn_daily/{action}", body, format="json")
    assert response.status_code == 403, response.content
    assert "device token may only upload new files" in error_of(response)["message"]
    assert DatasetVersion.objects.get(dataset=published).status == "active"
    assert AuditEntry.objects.filter(action__startswith="version.", via="api").count() == 0


def test_only_a_steward_makes_a_device_token_and_only_for_a_dataset_they_see(
    published, viewer, outsider, api
):
    api.force_login(viewer)
    body = {"name": "pi", "dataset": "gold/txn_daily"}
    assert api.post("/api/v1/tokens/", body, format="json").status_code == 403
    api.force_login(outsider)
    assert api.post("/api/v1/tokens/", body, format="json").status_code == 404


# --- Lock-out --------------------------------------------------------------------------


def test_repeated_failed_passwords_on_the_token_endpoint_lock_the_account(viewer, api, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        api.credentials(HTTP_AUTHORIZATION=basic("victor", "wrong"))
        assert api.get("/api/v1/tokens/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=basic("victor", "wrong"))
    assert api.get("/api/v1/tokens/").status_code == 429
    # Now even the right password is refused, in the API's error shape.
    api.credentials(HTTP_AUTHORIZATION=basic("victor", "pw-victor"))
    response = api.get("/api/v1/tokens/")
    assert response.status_code == 429
    assert error_of(response)["code"] == "locked"


def test_repeated_failed_passwords_on_the_admin_login_lock_the_account(steward, client, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "stella", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "stella", "password": "pw-stella"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
