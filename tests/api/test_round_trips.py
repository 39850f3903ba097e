"""What an authenticated read costs, and what it keeps: a token seen before is read with
its user's rate limits and the catalog's generation in one Redis round trip, yet a
revoked or expired token is refused by the very next request, the limits are shared by
every web process, and with Redis down tokens are checked against the database and a
limit that cannot be counted answers 503 with Retry-After, never 500."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from django.utils import timezone

from catalog.audit import Actor
from catalog.models import ApiToken
from catalog.tokens import token_create, token_revoke
from tests.api.conftest import assert_reads_as_serializer, error_of
from tests.conftest import wait_for
from tests.versioning.test_faults import PrivateRedis
from versioning.api.views import SignedUrlQuery, signed_url_params

pytestmark = pytest.mark.django_db

DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"
MANIFEST = "/api/v1/manifest/"


def command_counts(redis: PrivateRedis) -> dict[str, int]:
    import redis as redis_py

    stats = redis_py.Redis.from_url(redis.url).info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def reset_counts(redis: PrivateRedis) -> None:
    import redis as redis_py

    redis_py.Redis.from_url(redis.url).config_resetstat()


@pytest.mark.parametrize("path", [DOWNLOAD, MANIFEST])
def test_a_warm_authenticated_read_makes_one_round_trip_and_no_query(
    path, published, viewer, as_user, cache_redis, django_assert_num_queries
):
    client = as_user(viewer)
    etag = client.get(MANIFEST)["ETag"]
    assert client.get(DOWNLOAD).status_code == 200
    headers = {"HTTP_IF_NONE_MATCH": etag} if path == MANIFEST else {}
    reset_counts(cache_redis)
    with django_assert_num_queries(0):
        response = client.get(path, **headers)
    assert response.status_code == (304 if path == MANIFEST else 200)
    # One pipeline: count the limit (INCRBY, EXPIRE NX), read the token and the generation
    # (two GETs). Nothing else reaches the cache: no second read, no write.
    counts = command_counts(cache_redis)
    counts.pop("config|resetstat", None)
    counts.pop("info", None)
    counts.pop("hello", None)  # the connection reading these counts
    assert counts == {"incrby": 1, "expire": 1, "get": 2}


def test_each_request_has_its_own_token_and_user(published, viewer, as_user):
    # A token read again and again is decoded once (the round trip keeps it); every
    # request gets its own copy, so what one request changes no other one sees.
    client = as_user(viewer)
    assert client.get(DOWNLOAD).status_code == 200  # this process now knows the token
    first, second = (client.get(DOWNLOAD).wsgi_request for _ in range(2))
    assert first.auth.pk == second.auth.pk and first.user.pk == second.user.pk == viewer.pk
    assert first.auth is not second.auth and first.user is not second.user
    assert first.auth.scopes == second.auth.scopes and first.auth.scopes is not second.auth.scopes
    first.user.first_name = "changed by a view"
    first.auth.scopes.append("changed")
    third = client.get(DOWNLOAD).wsgi_request
    assert third.user.first_name == viewer.first_name
    assert third.auth.scopes == second.auth.scopes and "changed" not in third.auth.scopes


def test_a_warm_token_revoked_is_refused_by_the_very_next_request(published, viewer, as_user):
    client = as_user(viewer)
    for _ in range(3):
        assert client.get(DOWNLOAD).status_code == 200
    token_revoke(token=ApiToken.objects.get(user=viewer), actor=Actor(user=viewer))
    response = client.get(DOWNLOAD)
    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


def test_a_cached_token_is_refused_by_the_first_request_after_it_expires(published, viewer, api):
    expires = timezone.now() + timedelta(seconds=2)
    _, raw = token_create(
        user=viewer, name="short", scopes=["read"], actor=Actor(user=viewer), expires_at=expires
    )
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get(DOWNLOAD).status_code == 200
    assert api.get(DOWNLOAD).status_code == 200  # served with the cached row
    wait_for(lambda: timezone.now() > expires, timeout=5, message="the token's expiry")
    response = api.get(DOWNLOAD)
    assert response.status_code == 401
    assert "expired" in error_of(response)["message"]


@override_settings(API_RATES={"api": "1000/min", "signed_url": "2/min"})
def test_a_warm_token_still_counts_against_its_users_limit(published, viewer, as_user):
    first, second = as_user(viewer), as_user(viewer)
    first.get(MANIFEST), second.get(MANIFEST)  # both tokens now known to this process
    if time.time() % 60 > 55:  # keep the three requests in one window
        wait_for(lambda: time.time() % 60 < 5, timeout=10, message="a new window")
    statuses = [c.get(DOWNLOAD).status_code for c in (first, second, first)]
    assert statuses == [200, 200, 429]


def test_with_the_cache_down_tokens_are_checked_and_limits_answer_503(
    published, viewer, as_user, cache_redis
):
    client, revoked = as_user(viewer), as_user(viewer)
    assert client.get(DOWNLOAD).status_code == 200
    assert revoked.get(DOWNLOAD).status_code == 200
    cache_redis.stop()
    latest = ApiToken.objects.filter(user=viewer).latest("pk")  # the `revoked` client's
    token_revoke(token=latest, actor=Actor(user=viewer))  # commits with the cache down

    started = time.monotonic()
    refused = revoked.get(DOWNLOAD)
    assert refused.status_code == 401  # the token was read from the database
    assert "revoked" in error_of(refused)["message"]
    for path in (DOWNLOAD, MANIFEST):
        response = client.get(path)
        assert response.status_code == 503, response.content
        assert error_of(response)["code"] == "limit_unavailable"
        assert int(response["Retry-After"]) >= 1
    assert time.monotonic() - started < 5

    cache_redis.start()

    def answers() -> bool:
        return client.get(DOWNLOAD).status_code == 200

    wait_for(answers, timeout=15, interval=0.5, message="answers once the cache is back")


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"ttl": "60"},
        {"ttl": "604800"},
        {"ttl": "0060"},
        {"ttl": "59"},
        {"ttl": "604801"},
        {"ttl": "99999999999"},
        {"ttl": "3600.0"},
        {"ttl": " 3600"},
        {"ttl": "٣٦٠٠"},
        {"ttl": ""},
        {"ttl": "abc"},
        {"ttl": "600", "version": "1.0.0"},
        {"version": ""},
        {"region": "eu"},
    ],
)
def test_the_signed_url_parameters_read_as_the_serializer_reads_them(query):
    assert_reads_as_serializer(signed_url_params, SignedUrlQuery, query)


def test_the_signed_url_default_ttl_is_the_settings():
    assert signed_url_params({}) == {"ttl": django_settings.SIGNED_URL_DEFAULT_TTL}
