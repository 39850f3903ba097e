"""Signed download URLs in both modes, the seed's proxy form, raw redirects, rate limits."""

from __future__ import annotations

import hashlib
import io
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.test import override_settings

from catalog.storage import get_object_store
from tests.api.conftest import CSV, error_of, use_local_files

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

CONTRACT = {"signed_url", "expires_at", "dataset_info"}
INFO = {"row_count", "size_bytes", "last_updated", "sha256", "version"}


def parse_z(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@pytest.mark.s3  # fetches the presigned URL from the S3 server
def test_a_signed_url_downloads_exactly_the_bytes_the_manifest_lists(published, viewer, as_user):
    client = as_user(viewer)
    response = client.get("/api/v1/datasets/gold/txn_daily/download/?ttl=600")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == CONTRACT and set(body["dataset_info"]) == INFO
    manifest = client.get("/api/v1/manifest/").json()["datasets"]["gold/txn_daily"]
    assert body["dataset_info"]["sha256"] == manifest["sha256"]
    assert body["dataset_info"]["row_count"] == manifest["row_count"] == 3
    assert body["dataset_info"]["last_updated"] == manifest["last_modified"]

    fetched = requests.get(body["signed_url"], timeout=10)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == manifest["sha256"]


@pytest.mark.s3  # fetches the presigned URL from the S3 server
def test_in_the_services_mode_the_url_is_a_presigned_get_of_one_key_until_expires_at(
    published, viewer, as_user
):
    from versioning.models import DatasetVersion

    body = as_user(viewer).get("/api/v1/datasets/gold/txn_daily/download/?ttl=120").json()
    url = urlparse(body["signed_url"])
    query = parse_qs(url.query)
    key = DatasetVersion.objects.get(is_current=True).key
    assert url.path == f"/datasets-test/{key}"
    assert query["X-Amz-Expires"] == ["120"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert parse_z(body["expires_at"]) == signed_at + timedelta(seconds=120)


@pytest.mark.parametrize("ttl", ["59", "604801", "-5", "abc", "1e9", "3600.5x", "%00"])
def test_a_ttl_out_of_range_or_not_a_number_is_refused(published, viewer, as_user, ttl):
    response = as_user(viewer).get(f"/api/v1/datasets/gold/txn_daily/download/?ttl={ttl}")
    assert response.status_code == 400, response.content
    assert "ttl" in error_of(response)["details"]


def test_ttl_bounds_are_accepted(published, viewer, as_user):
    client = as_user(viewer)
    for ttl in (60, 604800):
        response = client.get(f"/api/v1/datasets/gold/txn_daily/download/?ttl={ttl}")
        assert response.status_code == 200


def test_a_named_version_is_signed_and_an_unknown_one_is_404(published, publish, viewer, as_user):
    publish(published, CSV + b"2024-08-12,ST0003,1.5,true\n", version="2.0.0")
    client = as_user(viewer)
    old = client.get("/api/v1/datasets/gold/txn_daily/download/?version=1.0.0").json()
    assert old["dataset_info"]["version"] == "1.0.0"
    assert "_v1.0.0.csv" in old["signed_url"]
    assert client.get("/api/v1/datasets/gold/txn_daily/download/?version=9.9.9").status_code == 404
    assert client.get("/api/v1/datasets/gold/txn_daily/versions/9.9.9/").status_code == 404


def test_the_seeds_proxy_form_answers_the_same(published, viewer, as_user):
    client = as_user(viewer)
    for url in (
        "/api/v1/dataset-proxy?dataset=gold/txn_daily&ttl=3600",
        "/api/v1/dataset-proxy?dataset=gold%2Ftxn_daily&ttl=3600",
    ):
        response = client.get(url)
        assert response.status_code == 200, response.content
        assert set(response.json()) == CONTRACT
    assert client.get("/api/v1/dataset-proxy?dataset=gold/nope").status_code == 404
    assert client.get("/api/v1/dataset-proxy?dataset=../etc/passwd").status_code == 404
    assert client.get("/api/v1/dataset-proxy").status_code == 400


@pytest.mark.s3  # fetches the presigned URL from the S3 server
def test_raw_redirects_to_a_signed_url(published, viewer, as_user):
    response = as_user(viewer).get("/api/v1/datasets/gold/txn_daily/raw/")
    assert response.status_code == 302
    fetched = requests.get(response["Location"], timeout=10)
    assert fetched.content == CSV


def test_nothing_published_yet_is_404(dataset, viewer, as_user):
    response = as_user(viewer).get("/api/v1/datasets/gold/txn_daily/download/")
    assert response.status_code == 404
    assert "published" in error_of(response)["message"]


@override_settings(API_RATES={"api": "1000/min", "signed_url": "3/min"})
def test_signed_url_requests_are_rate_limited_per_user_with_retry_after(published, viewer, as_user):
    first, second = as_user(viewer), as_user(viewer)
    statuses = [
        c.get("/api/v1/datasets/gold/txn_daily/download/").status_code
        for c in (first, second, first)
    ]
    assert statuses == [200, 200, 200]
    response = second.get("/api/v1/datasets/gold/txn_daily/download/")
    # The budget comes back when the minute's window ends: that is what Retry-After says.
    left_in_window = 60 - time.time() % 60
    assert response.status_code == 429
    off = (int(response["Retry-After"]) - left_in_window) % 60
    assert min(off, 60 - off) <= 1.5  # (a window may end between the two readings)
    assert error_of(response)["code"] == "throttled"
    # Other calls have their own budget.
    assert first.get("/api/v1/datasets/gold/txn_daily/").status_code == 200


@override_settings(API_RATES={"api": "2/min", "signed_url": "10/min"})
def test_other_calls_are_rate_limited_at_the_configured_rate(published, viewer, as_user):
    client = as_user(viewer)
    assert [client.get("/api/v1/datasets/").status_code for _ in range(3)] == [200, 200, 429]


# --- The embedded mode: the app signs and serves the files itself ----------------------


@pytest.fixture
def embedded(tmp_path, settings):
    use_local_files(settings, tmp_path)
    settings.PUBLIC_BASE_URL = "http://testserver"
    store = get_object_store()
    store.write("acme/v1/gold/a/a_2024-08-10_v1.0.0.csv", io.BytesIO(CSV), content_type="text/csv")
    store.write("acme/v1/gold/b/b_2024-08-10_v1.0.0.csv", io.BytesIO(b"other\n1\n"))
    return store


def local_path(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.path}?{parsed.query}"


def test_an_embedded_signed_url_streams_the_file_with_its_headers(embedded, client):
    url = embedded.signed_url("acme/v1/gold/a/a_2024-08-10_v1.0.0.csv", ttl=60, version="1.0.0").url
    response = client.get(local_path(url))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CSV
    assert response["Content-Length"] == str(len(CSV))
    assert response["Content-Type"].startswith("text/csv")
    assert response["ETag"]

    ranged = client.get(local_path(url), HTTP_RANGE="bytes=0-7")
    assert ranged.status_code == 206
    assert b"".join(ranged.streaming_content) == CSV[:8]
    assert ranged["Content-Range"] == f"bytes 0-7/{len(CSV)}"


def test_a_tampered_expired_or_cross_key_embedded_url_is_refused(embedded, client):
    key = "acme/v1/gold/a/a_2024-08-10_v1.0.0.csv"
    url = local_path(embedded.signed_url(key, ttl=60, version="1.0.0").url)
    refused = [
        url.replace("signature=", "signature=0"),
        url.replace("version=1.0.0", "version=1.0.1"),
        url.replace("expires=", "expires=9"),
        url.replace("/gold/a/a_", "/gold/b/b_"),
        local_path(embedded.signed_url(key, ttl=-1, version="1.0.0").url),
        url.split("?")[0],
    ]
    for bad in refused:
        response = client.get(bad)
        assert response.status_code == 403, bad
        assert error_of(response)["code"] == "forbidden"


def test_the_api_signs_embedded_urls_that_cover_the_version(embedded, published, viewer, as_user):
    from versioning.models import DatasetVersion

    version = DatasetVersion.objects.get(is_current=True)
    embedded.write(version.key, io.BytesIO(CSV))
    body = as_user(viewer).get("/api/v1/datasets/gold/txn_daily/download/?ttl=300").json()
    query = parse_qs(urlparse(body["signed_url"]).query)
    assert query["version"] == ["1.0.0"]
    assert parse_z(body["expires_at"]).timestamp() == int(query["expires"][0])
    from django.test import Client

    fetched = Client().get(local_path(body["signed_url"]))
    assert (
        hashlib.sha256(b"".join(fetched.streaming_content)).hexdigest()
        == (body["dataset_info"]["sha256"])
    )


def test_head_on_an_embedded_signed_url_answers_the_get_headers_without_the_body(embedded, client):
    url = local_path(
        embedded.signed_url("acme/v1/gold/a/a_2024-08-10_v1.0.0.csv", ttl=600, version="1.0.0").url
    )
    got = client.get(url)
    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Cache-Control"):
        assert head[name] == got[name], name
    assert head["Content-Length"] == str(len(CSV))
    directives = [d.strip() for d in head["Cache-Control"].split(",")]
    assert directives[0] == "private" and directives[2] == "immutable"
    assert 590 <= int(directives[1].removeprefix("max-age=")) <= 600
    assert client.get(url, HTTP_IF_NONE_MATCH=got["ETag"]).status_code == 304
    assert client.head(url.replace("signature=", "signature=0")).status_code == 403
    assert client.post(url).status_code == 405
