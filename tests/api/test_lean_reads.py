"""The signed-URL and manifest reads of a warm token skip DRF's dispatch, yet answer
exactly as DRF does: the same bytes and headers, the same refusals in the one error
shape, the same scopes and limits. Anything else (a session, no credentials, a first
token, an unusual Accept) still goes through DRF."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings
from rest_framework.views import APIView

from catalog.audit import Actor
from catalog.models import ApiToken
from catalog.tokens import token_revoke
from tests.api.conftest import error_of
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"
MANIFEST = "/api/v1/manifest/"
# DRF answers this Accept with plain JSON too, but only DRF's negotiation reads it.
THROUGH_DRF = {"HTTP_ACCEPT": "application/json;q=0.9, text/plain;q=0.1"}
KEPT_HEADERS = ("Content-Type", "Allow", "Cache-Control", "ETag", "WWW-Authenticate")


@pytest.fixture
def drf_dispatches(monkeypatch) -> list[str]:
    """The paths DRF's own dispatch ran for (its `initial`: negotiation, authentication,
    permissions, throttles)."""
    seen: list[str] = []
    initial = APIView.initial

    def spied(self, request, *args, **kwargs):
        seen.append(request.path)
        return initial(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", spied)
    return seen


def headers_of(response) -> dict[str, str | None]:
    return {name: response.get(name) for name in KEPT_HEADERS}


def test_a_warm_token_manifest_read_skips_drf_and_answers_byte_for_byte_as_drf(
    published, viewer, as_user, drf_dispatches
):
    client = as_user(viewer)
    through_drf = client.get(MANIFEST)  # the token's first request: DRF authenticates it
    assert drf_dispatches == [MANIFEST]
    etag = through_drf["ETag"]

    lean = client.get(MANIFEST)
    lean_304 = client.get(MANIFEST, HTTP_IF_NONE_MATCH=etag)
    drf_304 = client.get(MANIFEST, HTTP_IF_NONE_MATCH=etag, **THROUGH_DRF)
    assert drf_dispatches == [MANIFEST, MANIFEST]  # only the unusual Accept went to DRF

    assert (lean.status_code, lean.content) == (200, through_drf.content)
    assert headers_of(lean) == headers_of(through_drf)
    assert lean["Allow"] == "GET, HEAD, OPTIONS"
    assert (lean_304.status_code, drf_304.status_code) == (304, 304)
    assert lean_304.content == drf_304.content == b""
    assert headers_of(lean_304) == headers_of(drf_304)


def test_a_warm_token_signed_url_skips_drf_and_answers_as_drf(
    published, viewer, as_user, drf_dispatches
):
    client = as_user(viewer)
    client.get(MANIFEST)  # the token is now known to this process
    lean = client.get(f"{DOWNLOAD}?ttl=600")
    through_drf = client.get(f"{DOWNLOAD}?ttl=600", **THROUGH_DRF)
    assert drf_dispatches == [MANIFEST, DOWNLOAD]

    assert lean.status_code == through_drf.status_code == 200
    assert headers_of(lean) == headers_of(through_drf)
    assert lean["Cache-Control"] == "no-store"
    body, expected = lean.json(), through_drf.json()
    assert body.keys() == expected.keys()
    assert body["dataset_info"] == expected["dataset_info"]
    # Each signs for its own moment: the expiries differ by the time between them.
    assert abs(_epoch(body["expires_at"]) - _epoch(expected["expires_at"])) < 5
    # Compact JSON as DRF's renderer writes it.
    assert b": " not in lean.content and b", " not in lean.content


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_token_without_the_read_scope_is_refused_alike_on_both_paths(published, viewer, as_user):
    client = as_user(viewer, scopes=("publish",))
    first = client.get(MANIFEST)  # DRF's path: the token is new to this process
    second = client.get(MANIFEST)  # the lean path
    assert first.status_code == second.status_code == 403
    assert error_of(first) == error_of(second)
    assert error_of(second)["code"] == "insufficient_scope"
    assert headers_of(first) == headers_of(second)


def test_a_warm_token_revoked_is_refused_alike_on_both_paths(published, viewer, as_user):
    lean, through_drf = as_user(viewer), as_user(viewer)
    for client in (lean, through_drf):
        assert client.get(DOWNLOAD).status_code == 200
    for token in ApiToken.objects.filter(user=viewer):
        token_revoke(token=token, actor=Actor(user=viewer))

    refused = lean.get(DOWNLOAD)
    expected = through_drf.get(DOWNLOAD, **THROUGH_DRF)
    assert refused.status_code == expected.status_code == 401
    assert error_of(refused) == error_of(expected)
    assert refused["WWW-Authenticate"] == expected["WWW-Authenticate"] == 'Bearer realm="api"'


@override_settings(API_RATES={"api": "1000/min", "signed_url": "2/min"})
def test_the_signed_url_limit_holds_on_the_lean_path_and_refuses_in_drfs_shape(
    published, viewer, as_user
):
    client = as_user(viewer)
    client.get(MANIFEST)  # the token is known: every download below takes the lean path
    if time.time() % 60 > 55:  # keep the requests in one window
        wait_for(lambda: time.time() % 60 < 5, timeout=10, message="a new window")
    statuses = [client.get(DOWNLOAD).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]

    refused = client.get(DOWNLOAD)
    expected = client.get(DOWNLOAD, **THROUGH_DRF)
    assert refused.status_code == expected.status_code == 429
    assert error_of(refused)["code"] == error_of(expected)["code"] == "throttled"
    assert int(refused["Retry-After"]) >= 1 and int(expected["Retry-After"]) >= 1


def test_a_dataset_the_token_may_not_see_answers_404_on_the_lean_path(
    published, outsider, as_user, drf_dispatches
):
    client = as_user(outsider)
    client.get(MANIFEST)
    response = client.get(DOWNLOAD)
    assert drf_dispatches == [MANIFEST]
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert response["Allow"] == "GET, HEAD, OPTIONS"


def test_sessions_and_anonymous_callers_still_go_through_drf(
    published, viewer, client, drf_dispatches
):
    assert client.get(MANIFEST).status_code == 401  # anonymous: DRF asks for credentials
    client.force_login(viewer)
    assert client.get(MANIFEST).status_code == 200
    assert client.get(DOWNLOAD).status_code == 200
    assert drf_dispatches == [MANIFEST, MANIFEST, DOWNLOAD]


ROWS = "/api/v1/datasets/gold/txn_daily/rows/"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?limit=2&offset=1&columns=store_id,revenue",
        "?format=csv&columns=store_id",
        "?format=ndjson&limit=1",
        "?version=1.0.0&limit=1",
    ],
)
def test_a_warm_token_rows_read_skips_drf_and_answers_byte_for_byte_as_drf(
    published, viewer, as_user, drf_dispatches, query
):
    client = as_user(viewer)
    client.get(MANIFEST)  # the token is now known to this process
    lean = client.get(f"{ROWS}{query}")
    through_drf = client.get(f"{ROWS}{query}", **THROUGH_DRF)
    assert drf_dispatches == [MANIFEST, ROWS]  # only the unusual Accept went to DRF
    assert lean.status_code == through_drf.status_code == 200
    assert lean.content == through_drf.content
    assert headers_of(lean) == headers_of(through_drf)
    assert lean["X-Total-Count"] == through_drf["X-Total-Count"] == "3"


@pytest.mark.parametrize(
    "query, code",
    [
        ("?columns=store_id,nope", "invalid"),
        ("?limit=0", "invalid"),
        ("?offset=99", "invalid"),
        ("?version=9.9.9", "not_found"),
        ("?format=xml", "invalid"),
    ],
)
def test_a_refused_rows_read_is_refused_alike_on_both_paths(
    published, viewer, as_user, query, code
):
    client = as_user(viewer)
    client.get(MANIFEST)
    lean = client.get(f"{ROWS}{query}")
    through_drf = client.get(f"{ROWS}{query}", **THROUGH_DRF)
    assert lean.status_code == through_drf.status_code >= 400
    assert error_of(lean) == error_of(through_drf)
    assert error_of(lean)["code"] == code
