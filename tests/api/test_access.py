"""Nobody learns what they may not see: every route of the API, taken from the URL
configuration (so a new endpoint is covered without editing this file), walked as a
member of another organisation (404) and with a token of the wrong scope (403)."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from catalog.api.permissions import ScopePermission
from catalog.models import ApiToken, TokenScope, Visibility
from catalog.services import dataset_create
from tests.api.conftest import CSV, error_of
from versioning.models import PublishJob
from versioning.services.resumable import resumable_upload_create

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SECRET = "secret_ledger"


def api_routes() -> list[tuple[str, object]]:
    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.callback

    return [
        (route.replace("^", "").replace("$", ""), callback)
        for route, callback in walk(get_resolver().url_patterns, "")
        if route.startswith("api/v1/")
    ]


def methods_of(callback) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(m for m in actions if m in METHODS)
    cls = callback.view_class
    return [m for m in METHODS if hasattr(cls, m)]


def guarded(callback) -> bool:
    """API routes that hold data; the schema (public documentation) is not one of them."""
    cls = getattr(callback, "cls", None)
    return cls is not None and ScopePermission in cls.permission_classes


def fill(route: str, values: dict[str, str]) -> str:
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    assert resolve("/" + route), route
    return "/" + route


@pytest.fixture
def hidden(acme, steward, system, publish, make_token):
    """acme's private dataset, a version, a publish job and a token: all unseen by others."""
    dataset = dataset_create(organization=acme, layer="gold", name=SECRET, actor=system)
    publish(dataset, CSV)
    make_token(steward, name="acme-token")
    upload = resumable_upload_create(
        dataset=dataset, actor=system, source="api", filename="day.csv", size=len(CSV)
    )
    rule, replica, run = _replication_of(dataset, system)
    return {
        "layer": "gold",
        "name": SECRET,
        "org": "acme",
        "version": "1.0.0",
        "job_id": str(PublishJob.objects.get(dataset=dataset).pk),
        "pk": str(ApiToken.objects.get(name="acme-token").pk),
        "code": "eu-west-1",
        "rule_id": str(rule.pk),
        "replica_id": str(replica.pk),
        "run_id": str(run.pk),
        "upload_id": str(upload.pk),
    }


def _replication_of(dataset, system):
    """acme's replication rule, a replica of the dataset and a copy run of it."""
    from django.utils import timezone

    from replication.models import CopyRun, Region
    from replication.services import region_save, replicas_plan, rule_create

    primary = region_save(region=Region(code="us-east-1", name="US", is_primary=True), actor=system)
    eu = region_save(region=Region(code="eu-west-1", name="EU", local_path="/tmp/x"), actor=system)
    rule = rule_create(
        organization=dataset.organization, regions=[eu], actor=system, pattern="acme/gold/*"
    )
    version = dataset.versions.get()
    [replica] = replicas_plan(version=version, targets={eu: rule})
    run = CopyRun.objects.create(
        replica=replica,
        source_region=primary,
        target_region=eu,
        attempt=1,
        method="stream",
        started_at=timezone.now(),
    )
    return rule, replica, run


# Routes of objects every signed-in user may see, whatever their organisation.
SHARED = ("api/v1/replication/regions/",)


# Routes whose list answers need a query (a report's dates, the proxy's dataset).
def query_for(route: str) -> str:
    if "dataset-proxy" in route:
        return f"?dataset=gold/{SECRET}"
    if "reports/dsr" in route or "usage/export" in route:
        return "?begin_date=2026-01&end_date=2026-01"
    return ""


def test_the_walk_covers_the_api(hidden):
    routes = [route for route, callback in api_routes() if guarded(callback)]
    assert len(routes) >= 20
    assert any("rows" in r for r in routes) and any("tokens" in r for r in routes)


def test_another_organisations_user_gets_404_on_every_route_that_names_a_hidden_object(
    hidden, outsider, as_user
):
    client = as_user(outsider)
    checked = 0
    for route, callback in api_routes():
        if not guarded(callback):
            continue
        url = fill(route, hidden)
        has_object = ("<" in route or "(?P<" in route or "dataset-proxy" in route) and (
            not route.startswith(SHARED)
        )
        for method in methods_of(callback):
            response = getattr(client, method)(url + query_for(route), {}, format="json")
            assert response.status_code != 500, (method, url)
            if has_object:
                assert response.status_code == 404, (method, url, response.content)
                error_of(response)
                checked += 1
            elif method == "get":
                assert response.status_code == 200, (method, url)
                body = (
                    b"".join(response.streaming_content) if response.streaming else response.content
                )
                assert SECRET.encode() not in body, (method, url)
    assert checked >= 15


def test_a_token_of_the_wrong_scope_gets_403_on_every_route(hidden, steward, as_user):
    others = {
        TokenScope.READ: ["publish"],
        TokenScope.PUBLISH: ["read"],
        TokenScope.ADMIN: ["read", "publish"],
        None: ["read", "publish"],
    }
    checked = 0
    for route, callback in api_routes():
        if not guarded(callback):
            continue
        url = fill(route, hidden) + query_for(route)
        for method in methods_of(callback):
            needed = callback.cls.required_scopes.get(method.upper())
            client = as_user(steward, scopes=others[needed])
            response = getattr(client, method)(url, {}, format="json")
            assert response.status_code == 403, (method, url, needed, response.content)
            assert error_of(response)["code"] == "insufficient_scope"
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/gold/..%2F..%2Fsecret/",
        "/api/v1/datasets/gold/txn%2Fdaily/",
        "/api/v1/datasets/gold%2F..%2Fsilver/txn_daily/",
        "/api/v1/datasets/gold/../gold/txn_daily/",
        "/api/v1/datasets/gold/txn_d\u0430ily/",
        "/api/v1/datasets/gold/\uff54\uff58\uff4e_daily/",
        "/api/v1/datasets/g\u043eld/txn_daily/",
        "/api/v1/datasets/GOLD/txn_daily/",
        "/api/v1/datasets/gold/txn_daily/versions/1.0.0%00/",
        "/api/v1/datasets/gold/txn_daily/versions/..%2F1.0.0/",
        "/api/v1/orgs/ACME/datasets/gold/txn_daily/",
        "/api/v1/orgs/acme%2F..%2Fglobex/datasets/gold/txn_daily/",
    ],
)
def test_names_with_dots_encoded_slashes_or_look_alikes_match_nothing(
    path, published, steward, as_user
):
    response = as_user(steward).get(path)
    assert response.status_code == 404, path
    error_of(response)


def test_a_public_dataset_is_readable_without_credentials_but_nothing_else_is(
    acme, system, publish, api
):
    public = dataset_create(
        organization=acme, layer="gold", name="open", actor=system, visibility=Visibility.PUBLIC
    )
    publish(public, CSV)
    assert api.get("/api/v1/datasets/gold/open/rows/").status_code == 200
    assert api.get("/api/v1/datasets/gold/open/download/").status_code == 200
    assert api.get("/api/v1/manifest/").status_code == 401
    assert api.get("/api/v1/tokens/").status_code == 401
    response = api.post("/api/v1/datasets/gold/open/versions/", {}, format="json")
    assert response.status_code == 401
