"""Bad input answers 400 or 404 in the one error shape, never a 500 or an HTML page."""

from __future__ import annotations

import pytest
from django.test import override_settings

from catalog.models import Visibility
from catalog.services import dataset_create
from tests.api.conftest import error_of

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

FAR = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]


@pytest.mark.parametrize("moment", FAR)
def test_updated_since_beyond_the_calendar_in_utc_is_refused_with_400(
    dataset, viewer, as_user, moment
):
    response = as_user(viewer).get("/api/v1/datasets/", {"updated_since": moment})
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "updated_since" in error["details"]


@pytest.mark.parametrize("moment", FAR)
def test_published_since_beyond_the_calendar_in_utc_is_refused_with_400(
    published, viewer, as_user, moment
):
    response = as_user(viewer).get(
        "/api/v1/datasets/gold/txn_daily/versions/", {"published_since": moment}
    )
    assert response.status_code == 400, response.content
    assert "published_since" in error_of(response)["details"]


def test_an_offset_of_fourteen_hours_within_the_calendar_still_filters(dataset, viewer, as_user):
    response = as_user(viewer).get(
        "/api/v1/datasets/", {"updated_since": "2000-01-01T00:00:00-14:00"}
    )
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_a_freshness_window_longer_than_the_calendar_is_never_stale(acme, system, api):
    dataset_create(
        organization=acme,
        layer="gold",
        name="forever",
        actor=system,
        visibility=Visibility.PUBLIC,
        freshness_hours=2**31 - 1,
    )
    listed = api.get("/api/v1/datasets/")
    assert listed.status_code == 200, listed.content
    assert listed.json()["results"][0]["stale"] is True  # never published: late already
    assert api.get("/api/v1/datasets/?stale=false").json()["count"] == 0
    assert api.get("/api/v1/datasets/?stale=true").json()["count"] == 1


@pytest.mark.parametrize("size", ["abc", "0", "-3", "1.5", ""])
def test_an_invalid_page_size_is_refused_with_400(dataset, viewer, as_user, size):
    response = as_user(viewer).get("/api/v1/datasets/", {"page_size": size})
    assert response.status_code == 400, response.content
    assert "page_size" in error_of(response)["details"]


def test_a_page_size_above_the_maximum_is_cut_to_it(dataset, viewer, as_user):
    response = as_user(viewer).get("/api/v1/datasets/", {"page_size": "100000"})
    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_path_answers_the_json_error_shape_in_every_mode(client, debug):
    with override_settings(DEBUG=debug):
        response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("debug", [True, False])
def test_a_bad_host_under_the_api_answers_the_json_error_shape_in_every_mode(client, debug):
    with override_settings(DEBUG=debug):
        response = client.get("/api/v1/datasets/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


def test_pages_outside_the_api_keep_djangos_own_error_pages(client):
    with override_settings(DEBUG=True):
        response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
