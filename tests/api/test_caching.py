"""What the API caches: the list, the manifest and signed-URL facts under the catalog's
generations (never stale after a change, never shared between organisations), and local
copies of the columnar objects that rows are read from."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from catalog.models import Role
from catalog.services import dataset_create, dataset_update, membership_set
from catalog.storage import get_object_store
from tests.api.conftest import CSV
from tests.conftest import in_forked_child, wait_for
from versioning import columnar
from versioning.models import DatasetVersion
from versioning.services import dataset_rollback

pytestmark = pytest.mark.django_db

LIST = "/api/v1/datasets/"
MANIFEST = "/api/v1/manifest/"
DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"
ROWS = "/api/v1/datasets/gold/txn_daily/rows/"
MORE = CSV + b"2024-08-12,ST0003,1.5,false\n"


def paths(response) -> list[str]:
    return [f"{d['organization']}:{d['path']}" for d in response.json()["results"]]


def current_of(response) -> str | None:
    [entry] = [d for d in response.json()["results"] if d["path"] == "gold/txn_daily"]
    return (entry["current_version"] or {}).get("version")


# --- Query counts ----------------------------------------------------------------------


def test_a_warm_manifest_304_costs_no_query(published, viewer, as_user, django_assert_num_queries):
    client = as_user(viewer)
    etag = client.get(MANIFEST)["ETag"]
    with django_assert_num_queries(0):
        response = client.get(MANIFEST, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert response["ETag"] == etag


def test_a_warm_manifest_answers_the_same_document_with_no_query(
    published, viewer, as_user, django_assert_num_queries
):
    client = as_user(viewer)
    first = client.get(MANIFEST)
    with django_assert_num_queries(0):
        second = client.get(MANIFEST)
    assert second.status_code == 200
    assert second.content == first.content and second["ETag"] == first["ETag"]


def test_a_warm_list_costs_no_query_and_answers_the_same_bytes(
    published, viewer, as_user, django_assert_num_queries
):
    client = as_user(viewer)
    first = client.get(f"{LIST}?page_size=10")
    with django_assert_num_queries(0):
        second = client.get(f"{LIST}?page_size=10")
    assert second.status_code == 200 and second["Content-Type"] == "application/json"
    assert second.content == first.content


def test_a_warm_download_costs_no_query_but_signs_a_new_url_each_time(
    published, viewer, as_user, django_assert_num_queries
):
    client = as_user(viewer)
    first = client.get(f"{DOWNLOAD}?ttl=600").json()
    with django_assert_num_queries(0):
        response = client.get(f"{DOWNLOAD}?ttl=900")
    second = response.json()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert second["dataset_info"] == first["dataset_info"]
    assert second["signed_url"] != first["signed_url"]


# --- Invalidation: the very next call sees a change --------------------------------------


def test_a_publish_is_seen_by_the_very_next_list_manifest_and_download(
    published, viewer, as_user, publish
):
    client = as_user(viewer)
    etag = client.get(MANIFEST)["ETag"]
    assert current_of(client.get(LIST)) == "1.0.0"
    assert client.get(DOWNLOAD).json()["dataset_info"]["version"] == "1.0.0"

    assert publish(published, MORE).status == "succeeded"

    assert current_of(client.get(LIST)) == "1.0.1"
    manifest = client.get(MANIFEST, HTTP_IF_NONE_MATCH=etag)
    assert manifest.status_code == 200
    assert manifest.json()["datasets"]["gold/txn_daily"]["row_count"] == 4
    assert client.get(DOWNLOAD).json()["dataset_info"]["version"] == "1.0.1"


def test_a_rollback_is_seen_by_the_very_next_list_manifest_and_download(
    published, steward, viewer, as_user, publish, system
):
    publish(published, MORE)
    client = as_user(viewer)
    etag = client.get(MANIFEST)["ETag"]
    assert current_of(client.get(LIST)) == "1.0.1"
    assert client.get(DOWNLOAD).json()["dataset_info"]["row_count"] == 4

    dataset_rollback(dataset=published, to="1.0.0", reason="bad rows", actor=system)

    assert current_of(client.get(LIST)) == "1.0.0"
    manifest = client.get(MANIFEST, HTTP_IF_NONE_MATCH=etag)
    assert manifest.status_code == 200
    assert manifest.json()["datasets"]["gold/txn_daily"]["row_count"] == 3
    assert client.get(DOWNLOAD).json()["dataset_info"]["row_count"] == 3


def test_a_dataset_update_is_seen_by_the_very_next_list(published, viewer, as_user, system):
    client = as_user(viewer)
    assert client.get(LIST).json()["results"][0]["title"] == "Daily transactions"

    dataset_update(dataset=published, actor=system, title="Daily sales")

    assert client.get(LIST).json()["results"][0]["title"] == "Daily sales"


def test_a_visibility_change_is_seen_by_the_very_next_call_of_another_organisation(
    published, outsider, as_user, system
):
    client = as_user(outsider)
    assert paths(client.get(LIST)) == []
    assert client.get(DOWNLOAD).status_code == 404

    dataset_update(dataset=published, actor=system, visibility="internal")

    assert paths(client.get(LIST)) == ["acme:gold/txn_daily"]
    assert client.get(DOWNLOAD).status_code == 200

    dataset_update(dataset=published, actor=system, visibility="private")

    assert paths(client.get(LIST)) == []
    assert client.get(DOWNLOAD).status_code == 404


def test_a_new_dataset_is_seen_by_the_very_next_list(published, viewer, as_user, acme, system):
    client = as_user(viewer)
    assert client.get(LIST).json()["count"] == 1

    dataset_create(organization=acme, layer="silver", name="fresh", actor=system)

    assert client.get(LIST).json()["count"] == 2


def test_a_new_membership_is_seen_by_the_very_next_manifest(
    published, outsider, globex, acme, as_user, system
):
    client = as_user(outsider)
    assert client.get(MANIFEST).json()["datasets"] == {}

    membership_set(organization=acme, user=outsider, role=Role.VIEWER, actor=system)

    assert list(client.get(MANIFEST).json()["datasets"]) == ["gold/txn_daily"]
    assert paths(client.get(LIST)) == ["acme:gold/txn_daily"]


def test_a_cached_list_turns_a_dataset_stale_when_its_deadline_passes(
    published, viewer, as_user, system
):
    dataset_update(dataset=published, actor=system, freshness_hours=1)
    # Published an hour ago, less two seconds: the deadline is two seconds away.
    DatasetVersion.objects.filter(dataset=published).update(
        published_at=timezone.now() - timedelta(hours=1) + timedelta(seconds=2)
    )
    client = as_user(viewer)
    assert client.get(LIST).json()["results"][0]["stale"] is False
    wait_for(
        lambda: client.get(LIST).json()["results"][0]["stale"],
        timeout=10,
        interval=0.5,
        message="the list to show the dataset as stale",
    )


# --- Isolation between organisations ---------------------------------------------------


def test_members_of_two_organisations_never_get_each_others_cached_answers(
    published, steward, outsider, globex, as_user, publish, system
):
    theirs = dataset_create(organization=globex, layer="gold", name="txn_daily", actor=system)
    assert publish(theirs, MORE).status == "succeeded"
    ours, others = as_user(steward), as_user(outsider)
    for _ in range(2):  # cold, then from the cache
        mine = ours.get(MANIFEST)
        their = others.get(MANIFEST)
        assert mine.json()["datasets"]["gold/txn_daily"]["row_count"] == 3
        assert their.json()["datasets"]["gold/txn_daily"]["row_count"] == 4
        assert mine["ETag"] != their["ETag"]
        assert others.get(MANIFEST, HTTP_IF_NONE_MATCH=mine["ETag"]).status_code == 200
        assert paths(ours.get(LIST)) == ["acme:gold/txn_daily"]
        assert paths(others.get(LIST)) == ["globex:gold/txn_daily"]
        assert ours.get(DOWNLOAD).json()["dataset_info"]["row_count"] == 3
        assert others.get(DOWNLOAD).json()["dataset_info"]["row_count"] == 4


def test_an_anonymous_caller_gets_only_the_public_list_even_when_members_are_cached(
    published, viewer, as_user, api, acme, system
):
    dataset_create(
        organization=acme, layer="gold", name="open_data", actor=system, visibility="public"
    )
    assert len(as_user(viewer).get(LIST).json()["results"]) == 2
    assert paths(api.get(LIST)) == ["acme:gold/open_data"]
    assert api.get(DOWNLOAD).status_code == 401


def test_a_device_token_is_refused_the_list_its_user_has_cached(
    published, steward, as_user, acme, system
):
    dataset_create(organization=acme, layer="silver", name="other", actor=system)
    assert len(as_user(steward, scopes=("read",)).get(LIST).json()["results"]) == 2
    device = as_user(steward, scopes=("publish",), dataset=published)
    # A device token may not read at all: the cache must not answer it either.
    assert device.get(LIST).status_code == 403


# --- Local copies of columnar objects ---------------------------------------------------


def test_rows_are_read_from_the_local_copy_once_it_is_filled(
    published, with_columnar, viewer, as_user
):
    with_columnar(published)
    client = as_user(viewer)
    first = client.get(f"{ROWS}?limit=2&columns=store_id,revenue")
    assert first.status_code == 200, first.content
    # The bucket loses the object: a host that has its local copy still answers.
    key = DatasetVersion.objects.get(is_current=True).columnar_key
    get_object_store().delete(key)
    second = client.get(f"{ROWS}?limit=2&offset=1&columns=store_id,revenue")
    assert second.status_code == 200, second.content
    assert second.json()["results"][0] == first.json()["results"][1]


def test_rows_are_read_with_ranged_gets_when_local_copies_are_off(
    published, with_columnar, viewer, as_user, settings
):
    settings.COLUMNAR_CACHE_BYTES = 0
    with_columnar(published)
    response = as_user(viewer).get(f"{ROWS}?limit=1&offset=2")
    assert response.status_code == 200, response.content
    assert response.json()["results"] == [
        {"date_key": "2024-08-11", "store_id": "ST0001", "revenue": 3.25, "is_holiday": False}
    ]


@pytest.fixture
def objects(db):
    """Three objects of 1,000 bytes in the bucket, and a local copy store of its own."""
    store = get_object_store()
    keys = []
    for i in range(3):
        key = f"acme/columnar/test/object_{i}.parquet"
        store.write(key, io.BytesIO(bytes([i]) * 1000))
        keys.append(key)
    return store, keys


def test_local_copies_hold_the_objects_bytes(objects, tmp_path):
    store, keys = objects
    copies = columnar.LocalCopies(tmp_path, budget=10_000)
    path = copies.path(store, keys[0], 1000)
    assert path.read_bytes() == bytes([0]) * 1000
    assert copies.path(store, keys[0], 1000) == path


def test_local_copies_past_the_budget_lose_the_least_recently_used(objects, tmp_path):
    store, keys = objects
    copies = columnar.LocalCopies(tmp_path, budget=2000)
    first = copies.path(store, keys[0], 1000)
    second = copies.path(store, keys[1], 1000)
    copies.path(store, keys[0], 1000)  # used again: now the second is the oldest
    third = copies.path(store, keys[2], 1000)
    assert first.exists() and third.exists()
    assert not second.exists()


def test_an_object_larger_than_the_budget_gets_no_local_copy(objects, tmp_path):
    store, keys = objects
    assert columnar.LocalCopies(tmp_path, budget=999).path(store, keys[0], 1000) is None
    assert not list(tmp_path.glob("*.parquet"))


def test_concurrent_first_uses_fill_one_whole_copy(objects, tmp_path):
    store, keys = objects
    copies = columnar.LocalCopies(tmp_path, budget=10_000)
    found: list[Path] = []
    errors: list[BaseException] = []

    def use() -> None:
        try:
            found.append(copies.path(get_object_store(), keys[1], 1000))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(set(found)) == 1 and found[0].read_bytes() == bytes([1]) * 1000
    assert not list(tmp_path.glob(".fill-*"))


def test_a_short_download_leaves_no_local_copy(objects, tmp_path):
    store, keys = objects
    copies = columnar.LocalCopies(tmp_path, budget=10_000)
    # The size the caller expects is not the object's: nothing is kept.
    with pytest.raises(OSError):
        copies.path(store, keys[0], 1001)
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".fill-*"))


def test_local_copies_live_under_var_dir():
    assert columnar.local_copies().root == Path(settings.VAR_DIR) / "columnar-cache"


def test_warm_rows_cost_no_query_once_the_columnar_copy_is_recorded(
    published, with_columnar, viewer, as_user, django_assert_num_queries
):
    client = as_user(viewer)
    assert client.get(f"{ROWS}?limit=1").status_code == 200  # before the copy exists
    with_columnar(published)
    with django_assert_num_queries(1):  # the cached version learns of its copy
        assert client.get(f"{ROWS}?limit=1").status_code == 200
    with django_assert_num_queries(0):
        response = client.get(f"{ROWS}?limit=1&offset=1&columns=store_id")
    assert response.json()["results"] == [{"store_id": "ST0002"}]


# --- The shared cache ------------------------------------------------------------------


def test_the_shared_cache_reuses_one_redis_client_per_pool():
    from django.core.cache import caches

    cache = caches["default"]
    assert cache._cache.get_client("a") is cache._cache.get_client("b", write=True)


def test_a_rate_limit_counter_counts_and_expires_with_its_window():
    from django.core.cache import caches

    cache = caches["default"]
    assert [cache.incr_with_expiry("counter", seconds=61) for _ in range(3)] == [1, 2, 3]
    key = cache.make_and_validate_key("counter")
    assert 0 < cache._cache.get_client(key).ttl(key) <= 61
    assert cache.get("counter") == 3


def _client_id(connection) -> int:
    connection.send_command("CLIENT", "ID")
    return connection.read_response()


def test_round_trips_reuse_their_connection_and_survive_redis_restarting(cache_redis):
    from django.core.cache import caches

    cache = caches["default"]
    assert cache.round_trip(incr=[("hits", 60)], get=["absent"]) == ([1], [None])
    [connection] = cache._idle
    before = _client_id(connection)
    cache.set("present", {"a": 1})
    assert cache.round_trip(incr=[("hits", 60)], get=["present"]) == ([2], [{"a": 1}])
    assert cache._idle == [connection] and _client_id(connection) == before

    # The idle connection is closed under it: the next round trip opens another one.
    cache_redis.stop()
    cache_redis.start()
    assert cache.round_trip(incr=[("hits", 60)], get=["present"]) == ([1], [None])
    assert cache._idle[0] is not connection


def test_a_forked_process_opens_round_trip_connections_of_its_own(cache_redis):
    from django.core.cache import caches

    cache = caches["default"]
    cache.round_trip(incr=[("hits", 60)], get=[])
    parents = _client_id(cache._idle[0])

    def in_child() -> str:
        counts, _ = cache.round_trip(incr=[("hits", 60)], get=[])
        return f"{counts[0]} {_client_id(cache._idle[-1])}"

    count, childs = in_forked_child(in_child).split()
    assert count == "2" and int(childs) != parents
    # The child let go of its copy of the parent's socket without closing it.
    assert cache.round_trip(incr=[("hits", 60)], get=[]) == ([3], [])
    assert _client_id(cache._idle[-1]) == parents


def test_a_kept_value_is_decoded_once_per_stored_bytes():
    from django.core.cache import caches

    cache = caches["default"]
    cache.set("row", {"scopes": ["read"]})
    _, [first] = cache.round_trip(incr=[], get=["row"], kept=["row"])
    _, [again] = cache.round_trip(incr=[], get=["row"], kept=["row"])
    assert first == {"scopes": ["read"]} and again is first
    _, [decoded] = cache.round_trip(incr=[], get=["row"])  # not kept: decoded anew
    assert decoded == first and decoded is not first

    cache.set("row", {"scopes": ["read", "publish"]})  # new bytes: decoded anew
    _, [changed] = cache.round_trip(incr=[], get=["row"], kept=["row"])
    assert changed == {"scopes": ["read", "publish"]}
    cache.delete("row")
    assert cache.round_trip(incr=[], get=["row"], kept=["row"]) == ([], [None])


def test_the_manifest_matches_if_none_match_lists_weak_tags_and_the_wildcard(
    published, viewer, as_user
):
    client = as_user(viewer)
    etag = client.get(MANIFEST)["ETag"]
    for header in (etag, f'"other", W/{etag}', "*"):
        assert client.get(MANIFEST, HTTP_IF_NONE_MATCH=header).status_code == 304, header
    for header in ('"other"', "not an etag", etag.strip('"')):
        assert client.get(MANIFEST, HTTP_IF_NONE_MATCH=header).status_code == 200, header


def test_the_shared_cache_holds_a_versions_facts_as_plain_data_not_model_instances(
    published, viewer, as_user
):
    from django.core.cache import cache
    from django.db.models import Model

    as_user(viewer).get(f"{DOWNLOAD}?ttl=600")
    client = cache._cache.get_client()
    keys = [k.decode().split(":", 2)[2] for k in client.keys("*api-version:*")]
    assert keys

    def plain(value) -> bool:
        if isinstance(value, Model):
            return False
        if isinstance(value, dict):
            return all(plain(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return True

    for key in keys:
        generation, value = cache.get(key)
        assert plain(value)
        current = DatasetVersion.objects.get(dataset=published, is_current=True)
        assert value[1]["fields"]["sha256"] == current.sha256
