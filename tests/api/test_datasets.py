"""The catalog through the API: listing, filters, search, detail, create, change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import AuditEntry, Dataset, Visibility
from catalog.services import dataset_create
from tests.api.conftest import CSV, error_of

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


def paths(response) -> list[str]:
    return [f"{d['organization']}:{d['path']}" for d in response.json()["results"]]


@pytest.fixture
def catalog(acme, globex, system):
    """acme: a private, an internal and a public dataset; globex: a private one."""
    made = {
        "private": dataset_create(
            organization=acme,
            layer="gold",
            name="txn_daily",
            actor=system,
            title="Daily transactions",
            description="Daily transaction aggregates by store and region",
            tags=["sales", "stores"],
        ),
        "internal": dataset_create(
            organization=acme,
            layer="silver",
            name="product_mix",
            actor=system,
            title="Product mix",
            visibility=Visibility.INTERNAL,
            tags=["products"],
            freshness_hours=24,
        ),
        "public": dataset_create(
            organization=acme,
            layer="platinum",
            name="store_perf",
            actor=system,
            description="Store performance rankings",
            visibility=Visibility.PUBLIC,
        ),
        "foreign": dataset_create(
            organization=globex, layer="gold", name="secret_sauce", actor=system
        ),
    }
    return made


def test_a_member_lists_their_private_internal_and_public_datasets_but_not_another_orgs(
    catalog, viewer, as_user
):
    response = as_user(viewer).get("/api/v1/datasets/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert sorted(paths(response)) == [
        "acme:gold/txn_daily",
        "acme:platinum/store_perf",
        "acme:silver/product_mix",
    ]


def test_an_outsider_sees_internal_and_public_datasets_only(catalog, outsider, as_user):
    response = as_user(outsider).get("/api/v1/datasets/")
    assert sorted(paths(response)) == [
        "acme:platinum/store_perf",
        "acme:silver/product_mix",
        "globex:gold/secret_sauce",
    ]


def test_anonymous_callers_see_public_datasets_only(catalog, api):
    response = api.get("/api/v1/datasets/")
    assert response.status_code == 200
    assert paths(response) == ["acme:platinum/store_perf"]
    assert api.get("/api/v1/datasets/platinum/store_perf/").status_code == 200
    # Anything else asks for credentials, whether or not it exists.
    assert api.get("/api/v1/datasets/gold/txn_daily/").status_code == 401
    assert api.get("/api/v1/datasets/gold/no_such_thing/").status_code == 401


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("layer=gold", ["acme:gold/txn_daily"]),
        ("organization=acme&visibility=internal", ["acme:silver/product_mix"]),
        ("tag=stores", ["acme:gold/txn_daily"]),
        ("search=store", ["acme:gold/txn_daily", "acme:platinum/store_perf"]),
        ("search=DAILY aggregates", ["acme:gold/txn_daily"]),
        ("search=nothing-like-this", []),
        ("stale=true", ["acme:silver/product_mix"]),
        ("ordering=-name", ["acme:platinum/store_perf", "acme:silver/product_mix"]),
    ],
)
def test_filters_search_and_ordering(catalog, viewer, as_user, query, expected):
    response = as_user(viewer).get(f"/api/v1/datasets/?{query}")
    assert response.status_code == 200, response.content
    got = paths(response)
    if query.startswith("ordering"):
        got = [p for p in got if p != "acme:gold/txn_daily"]
    assert got == expected


def test_a_dataset_is_stale_once_its_freshness_window_passes(catalog, publish, viewer, as_user):
    dataset = catalog["internal"]
    publish(dataset, CSV)
    client = as_user(viewer)
    assert paths(client.get("/api/v1/datasets/?stale=true")) == []
    from versioning.models import DatasetVersion

    DatasetVersion.objects.filter(dataset=dataset).update(
        published_at=timezone.now() - timedelta(hours=25)
    )
    assert paths(client.get("/api/v1/datasets/?stale=true")) == ["acme:silver/product_mix"]
    detail = client.get("/api/v1/datasets/silver/product_mix/").json()
    assert detail["stale"] is True


def test_updated_since_keeps_recent_changes(catalog, viewer, as_user):
    Dataset.objects.filter(pk=catalog["private"].pk).update(
        updated_at=timezone.now() - timedelta(days=3)
    )
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    response = as_user(viewer).get("/api/v1/datasets/", {"updated_since": since})
    assert "acme:gold/txn_daily" not in paths(response)
    assert "acme:silver/product_mix" in paths(response)


@pytest.mark.parametrize(
    "query",
    [
        "layer=diamond",
        "visibility=secret",
        "updated_since=yesterday",
        "stale=perhaps",
        "search=%00",
        "ordering=password",
    ],
)
def test_bad_filter_values_are_refused_with_400(catalog, viewer, as_user, query):
    response = as_user(viewer).get(f"/api/v1/datasets/?{query}")
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "invalid"


def test_the_detail_shows_the_current_versions_facts_and_schema(published, viewer, as_user):
    body = as_user(viewer).get("/api/v1/datasets/gold/txn_daily/").json()
    current = body["current_version"]
    assert current["version"] == "1.0.0"
    assert current["row_count"] == 3
    assert [c["name"] for c in current["schema"]] == [
        "date_key",
        "store_id",
        "revenue",
        "is_holiday",
    ]
    assert body["url"] == "/api/v1/orgs/acme/datasets/gold/txn_daily/"


def test_the_number_of_queries_of_a_list_does_not_grow_with_the_page_size(
    acme, system, publish, viewer, as_user
):
    for i in range(30):
        dataset = dataset_create(organization=acme, layer="gold", name=f"d{i:02d}", actor=system)
        if i % 3 == 0:
            publish(dataset, CSV)
    client = as_user(viewer)
    client.get("/api/v1/datasets/")  # the token's first use records its last-used time
    counts = []
    for size in (3, 30):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/api/v1/datasets/?page_size={size}")
        assert len(response.json()["results"]) == size
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 6


def test_a_steward_registers_a_dataset_and_it_is_audited(steward, as_user):
    response = as_user(steward).post(
        "/api/v1/datasets/",
        {"layer": "gold", "name": "basket_patterns", "title": "Baskets", "tags": ["sales"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["path"] == "gold/basket_patterns"
    entry = AuditEntry.objects.get(action="dataset.create")
    assert entry.actor == steward and entry.via == "api"


def test_a_viewer_may_not_register_a_dataset(viewer, as_user):
    response = as_user(viewer).post(
        "/api/v1/datasets/", {"layer": "gold", "name": "x"}, format="json"
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_registering_refuses_bad_names_and_duplicates(dataset, steward, as_user):
    client = as_user(steward)
    for name in ["../etc", "Upper", "with space", "a" * 70, "tx\u043d"]:
        response = client.post("/api/v1/datasets/", {"layer": "gold", "name": name}, format="json")
        assert response.status_code == 400, name
    response = client.post(
        "/api/v1/datasets/", {"layer": "gold", "name": "txn_daily"}, format="json"
    )
    assert response.status_code == 400
    assert "already has a dataset" in error_of(response)["message"]


def test_malformed_json_is_refused_with_400(steward, as_user):
    response = as_user(steward).post(
        "/api/v1/datasets/", data=b'{"layer": "gold", "name": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_a_steward_changes_a_dataset_and_it_is_audited(dataset, steward, as_user):
    response = as_user(steward).patch(
        "/api/v1/datasets/gold/txn_daily/",
        {"description": "New words", "freshness_hours": 6},
        format="json",
    )
    assert response.status_code == 200, response.content
    dataset.refresh_from_db()
    assert dataset.description == "New words" and dataset.freshness_hours == 6
    assert AuditEntry.objects.filter(action="dataset.update", via="api").exists()


def test_a_viewer_gets_403_and_an_outsider_404_when_changing_a_dataset(
    dataset, viewer, outsider, as_user
):
    url = "/api/v1/datasets/gold/txn_daily/"
    assert as_user(viewer).patch(url, {"title": "x"}, format="json").status_code == 403
    assert as_user(outsider).patch(url, {"title": "x"}, format="json").status_code == 404


def test_names_that_collide_across_organisations_are_reached_through_the_org_route(
    dataset, globex, system, django_user_model, as_user
):
    from catalog.models import Role
    from catalog.services import membership_set

    dataset_create(organization=globex, layer="gold", name="txn_daily", actor=system)
    both = django_user_model.objects.create_user(username="bea", password="pw-bea")
    membership_set(organization=dataset.organization, user=both, role=Role.VIEWER, actor=system)
    membership_set(organization=globex, user=both, role=Role.VIEWER, actor=system)
    client = as_user(both)

    response = client.get("/api/v1/datasets/gold/txn_daily/")
    assert response.status_code == 400
    assert error_of(response)["details"]["organizations"] == ["acme", "globex"]
    response = client.get("/api/v1/orgs/globex/datasets/gold/txn_daily/")
    assert response.status_code == 200
    assert response.json()["organization"] == "globex"
