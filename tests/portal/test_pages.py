"""The subscriber pages through Django's test client: what each shows, to whom, and in
how many queries whatever the catalog's size."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests
from django.urls import reverse

from catalog.models import ApiToken, Visibility
from catalog.services import dataset_create, dataset_update
from catalog.tokens import token_create
from tests.versioning.conftest import base_csv
from versioning.services import version_deprecate

pytestmark = pytest.mark.django_db


def _page(dataset) -> str:
    return reverse("portal:dataset", args=[dataset.organization.slug, dataset.layer, dataset.name])


def _register(org, count: int, system, *, visibility=Visibility.INTERNAL, prefix="ds"):
    return [
        dataset_create(
            organization=org,
            layer="silver",
            name=f"{prefix}_{i:03d}",
            actor=system,
            title=f"Table {i}",
            tags=["sales", f"t{i % 3}"],
            visibility=visibility,
            freshness_hours=24,
        )
        for i in range(count)
    ]


@pytest.fixture
def published(dataset, publish, system):
    dataset_update(dataset=dataset, actor=system, tags=["sales", "daily"], freshness_hours=24)
    publish(dataset, base_csv())
    publish(dataset, base_csv(store_id=None), version="2.0.0")
    dataset.refresh_from_db()
    return dataset


# --- The catalog ----------------------------------------------------------------------


def test_an_anonymous_visitor_sees_public_datasets_only_and_a_sign_in_link(
    client, acme, system, dataset
):
    dataset_create(
        organization=acme, layer="gold", name="open_data", actor=system, visibility="public"
    )

    page = client.get("/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "gold/open_data" in html and "gold/txn_daily" not in html
    assert reverse("portal:login") in html


def test_a_member_finds_a_dataset_by_search_filters_and_tag(client, viewer, published, system):
    _register(published.organization, 3, system)
    client.force_login(viewer)

    found = client.get("/", {"search": "daily transactions", "layer": "gold", "tag": "daily"})
    nothing = client.get("/", {"search": "nowhere"})

    html = found.content.decode()
    assert "gold/txn_daily" in html and "silver/ds_000" not in html
    assert "2.0.0" in html and "Fresh" in html
    assert "No dataset matches" in nothing.content.decode()


def test_a_dataset_past_its_freshness_expectation_is_marked_stale(client, viewer, published):
    from versioning.models import DatasetVersion

    DatasetVersion.objects.filter(dataset=published).update(published_at="2020-01-01T00:00Z")
    client.force_login(viewer)

    assert "Stale" in client.get("/").content.decode()


def test_a_filter_naming_an_unknown_layer_or_a_hidden_organisation_says_so(
    client, viewer, published, globex, system
):
    dataset_create(organization=globex, layer="gold", name="secret", actor=system)
    client.force_login(viewer)

    layer = client.get("/", {"layer": "diamond"})
    hidden = client.get("/", {"organization": "globex"})

    assert layer.status_code == 400
    assert "Layer: diamond is not one you can choose." in layer.content.decode()
    assert "Organisation: globex is not one you can choose." in hidden.content.decode()
    assert "gold/secret" not in hidden.content.decode()
    assert "gold/txn_daily" not in layer.content.decode()


def test_the_catalog_is_paginated(client, viewer, acme, system):
    _register(acme, 23, system)
    client.force_login(viewer)

    first = client.get("/").content.decode()
    second = client.get("/", {"page": 2}).content.decode()

    assert "Page 1 of 2" in first and "silver/ds_019" in first and "silver/ds_020" not in first
    assert "silver/ds_022" in second


def test_private_datasets_of_another_organisation_never_show(client, outsider, published):
    client.force_login(outsider)

    assert "txn_daily" not in client.get("/").content.decode()
    assert client.get(_page(published)).status_code == 404
    download = reverse("portal:dataset-download", args=["acme", "gold", "txn_daily"])
    assert client.get(download).status_code == 404


@pytest.mark.parametrize("signed_in", [False, True])
def test_the_catalog_costs_the_same_queries_for_3_or_30_datasets(
    client, viewer, acme, system, signed_in
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if signed_in:
        client.force_login(viewer)
    visibility = Visibility.INTERNAL if signed_in else Visibility.PUBLIC
    counts = []
    for added in (3, 27):
        _register(acme, added, system, visibility=visibility, prefix=f"n{added}")
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert counts[1] <= 10


# --- The dataset page -----------------------------------------------------------------


def test_the_dataset_page_shows_facts_schema_preview_versions_and_changelog(
    client, viewer, published
):
    client.force_login(viewer)

    page = client.get(_page(published))

    html = page.content.decode()
    assert page.status_code == 200
    assert "<title>gold/txn_daily · Dataset Publisher</title>" in html
    for text in (
        "Current version 2.0.0",
        "Daily transactions",
        "<code>revenue</code>",
        "integer",
        "2024-08-10",
        "Breaking: store_id",
        "Download CSV",
        "Private (members of the organisation)",
    ):
        assert text in html
    assert 'id="preview-table"' in html and html.count("<tr>") >= 3


def test_the_dataset_page_costs_the_same_queries_for_few_or_many_versions_and_datasets(
    client, viewer, dataset, publish, system
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(viewer)
    counts = []
    for size, versions in ((3, 1), (30, 3)):
        _register(dataset.organization, size, system, prefix=f"p{size}")
        while dataset.versions.count() < versions:
            n = dataset.versions.count()
            publish(dataset, base_csv(units=[n, n, n + 1]))
        with CaptureQueriesContext(connection) as queries:
            assert client.get(_page(dataset)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_a_deprecated_version_shows_a_banner_with_its_sunset(client, viewer, published, system):
    from datetime import date

    old = published.versions.get(version="1.0.0")
    version_deprecate(version=old, message="Use 2.0.0.", sunset=date(2030, 1, 1), actor=system)
    client.force_login(viewer)

    html = client.get(_page(published)).content.decode()

    assert "Version 1.0.0 is deprecated" in html and "2030-01-01" in html
    assert "Use 2.0.0." in html


def test_lineage_links_lead_to_the_inputs_the_viewer_may_see(
    client, viewer, published, publish_with, acme, system
):
    derived = dataset_create(organization=acme, layer="platinum", name="sales_7d", actor=system)
    publish_with(derived, base_csv(), inputs=["gold/txn_daily@2.0.0"])
    client.force_login(viewer)

    up = client.get(_page(derived)).content.decode()
    down = client.get(_page(published)).content.decode()

    assert f'href="{_page(published)}"' in up
    assert f'href="{_page(derived)}"' in down


def test_the_download_button_redirects_to_a_signed_url_of_the_file(client, viewer, published):
    client.force_login(viewer)
    url = reverse("portal:dataset-download", args=["acme", "gold", "txn_daily"])

    current = client.get(url)
    old = client.get(url, {"version": "1.0.0"})

    assert current.status_code == 302 and current["Cache-Control"] == "no-store"
    body = requests.get(current["Location"], timeout=10).content
    assert body == base_csv(store_id=None)
    assert "1.0.0" in urlparse(old["Location"]).path
    assert client.get(url, {"version": "9.9.9"}).status_code == 404


def test_downloads_share_the_apis_signed_url_budget(client, viewer, published, settings):
    settings.API_RATES = {**settings.API_RATES, "signed_url": "2/min"}
    client.force_login(viewer)
    url = reverse("portal:dataset-download", args=["acme", "gold", "txn_daily"])

    answers = [client.get(url).status_code for _ in range(3)]

    assert answers == [302, 302, 429]


# --- Tokens ---------------------------------------------------------------------------


def test_a_token_is_made_shown_once_listed_and_revoked(client, viewer):
    client.force_login(viewer)
    url = reverse("portal:tokens")

    made = client.post(
        url, {"kind": "personal", "name": "notebook", "scopes": ["read"], "expires_in": "30"}
    )

    token = ApiToken.objects.get(user=viewer)
    html = made.content.decode()
    secret = html.split('id="token-secret">')[1].split("<")[0]
    assert secret.startswith(token.prefix) and token.scopes == ["read"]
    assert secret not in client.get(url).content.decode()
    assert made["Cache-Control"].startswith("max-age=0")

    revoked = client.post(reverse("portal:token-revoke", args=[token.pk]))

    token.refresh_from_db()
    assert revoked.status_code == 302 and token.revoked_at is not None


def test_a_token_form_without_scopes_or_name_says_what_is_missing(client, viewer):
    client.force_login(viewer)

    answer = client.post(reverse("portal:tokens"), {"kind": "personal", "expires_in": "30"})

    html = answer.content.decode()
    assert answer.status_code == 400
    assert "Choose at least one scope." in html and "This field is required." in html
    assert not ApiToken.objects.exists()


def test_a_steward_makes_a_device_token_for_one_dataset_and_a_viewer_cannot(
    client, steward, viewer, published
):
    client.force_login(steward)
    made = client.post(
        reverse("portal:tokens"),
        {"kind": "device", "name": "pi-042", "dataset": published.pk, "expires_in": "30"},
    )
    assert made.status_code == 200
    device = ApiToken.objects.get(user=steward)
    assert (device.kind, device.dataset, device.scopes) == ("device", published, ["publish"])

    client.force_login(viewer)
    page = client.get(reverse("portal:tokens")).content.decode()
    refused = client.post(
        reverse("portal:tokens"),
        {"kind": "device", "name": "pi-043", "dataset": published.pk, "expires_in": "30"},
    )
    assert "Device token" not in page
    assert refused.status_code == 400 and not ApiToken.objects.filter(user=viewer).exists()


def test_nobody_revokes_another_users_token(client, viewer, steward, system):
    from catalog.audit import Actor

    token, _ = token_create(user=steward, name="ci", scopes=["read"], actor=Actor(user=steward))
    client.force_login(viewer)

    answer = client.post(reverse("portal:token-revoke", args=[token.pk]))

    token.refresh_from_db()
    assert answer.status_code == 404 and token.revoked_at is None


def test_the_tokens_page_costs_the_same_queries_for_few_or_many_tokens(
    client, steward, acme, system
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from catalog.audit import Actor

    client.force_login(steward)
    counts = []
    for size in (3, 30):
        datasets = _register(acme, size, system, prefix=f"k{size}")
        for d in datasets:
            token_create(user=steward, name=d.name, dataset=d, actor=Actor(user=steward))
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("portal:tokens")).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_tokens_page_asks_an_anonymous_visitor_to_sign_in(client):
    answer = client.get(reverse("portal:tokens"))

    assert answer.status_code == 302
    assert answer["Location"].startswith(reverse("portal:login"))


# --- Layout ---------------------------------------------------------------------------


def test_every_page_has_a_title_landmarks_and_csrf_protected_forms(client, viewer, published):
    client.force_login(viewer)
    for url in ("/", _page(published), reverse("portal:tokens")):
        html = client.get(url).content.decode()
        assert "<title>" in html and "<main" in html and "<header" in html and "<footer" in html
        assert html.count('method="post"') == html.count("csrfmiddlewaretoken")


def test_the_admins_view_site_link_leads_to_the_catalog(client, steward):
    client.force_login(steward)

    html = client.get(reverse("admin:index")).content.decode()

    assert '<a href="/">View site</a>' in html


def test_an_anonymous_visitor_reads_and_downloads_a_public_dataset(client, published, system):
    dataset_update(dataset=published, actor=system, visibility=Visibility.PUBLIC)

    page = client.get(_page(published))
    download = client.get(reverse("portal:dataset-download", args=["acme", "gold", "txn_daily"]))

    assert page.status_code == 200 and 'id="preview-table"' in page.content.decode()
    assert "Manage in the admin" not in page.content.decode()
    assert download.status_code == 302


def test_a_dataset_with_nothing_published_says_so(client, viewer, dataset):
    client.force_login(viewer)

    html = client.get(_page(dataset)).content.decode()
    download = client.get(reverse("portal:dataset-download", args=["acme", "gold", "txn_daily"]))

    assert "Nothing published yet" in html and "Download" not in html
    assert download.status_code == 404


def test_drafts_and_archived_versions_are_for_stewards_only(
    client, viewer, steward, published, publish_with, system
):
    from versioning.services import version_archive

    publish_with(published, base_csv(store_id=None, units=[9, 9, 9]), draft=True)
    version_archive(version=published.versions.get(version="1.0.0"), actor=system)
    url = reverse("portal:dataset-download", args=["acme", "gold", "txn_daily"])

    client.force_login(viewer)
    seen_by_viewer = client.get(_page(published)).content.decode()
    viewer_draft = client.get(url, {"version": "2.0.1"}).status_code
    viewer_archived = client.get(url, {"version": "1.0.0"}).status_code
    client.force_login(steward)
    seen_by_steward = client.get(_page(published)).content.decode()
    steward_draft = client.get(url, {"version": "2.0.1"}).status_code

    assert 'id="v2.0.1"' not in seen_by_viewer and 'id="v1.0.0"' not in seen_by_viewer
    assert 'id="v2.0.1"' in seen_by_steward and "Manage in the admin" in seen_by_steward
    assert (viewer_draft, viewer_archived, steward_draft) == (404, 403, 302)
