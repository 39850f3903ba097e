"""The layout other apps plug into: navigation items, header badges and dataset-page
panels from the registry; CSRF on every form; cheap pages without a catalog."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from catalog import registry
from catalog.registry import Badge, NavItem, Panel

pytestmark = pytest.mark.django_db


@pytest.fixture
def clean_header(monkeypatch):
    monkeypatch.setattr(registry, "_nav", dict(registry._nav))
    monkeypatch.setattr(registry, "_badges", {})
    monkeypatch.setitem(registry._panels, registry.DATASET_PAGE, {})


def test_another_apps_page_badge_and_panel_appear_without_the_layout_knowing_them(
    client, viewer, dataset, clean_header
):
    registry.nav_register(NavItem(name="inbox", title="Inbox", url_name="portal:tokens", order=40))
    registry.badge_register(
        Badge(
            name="unread",
            template="catalog/tests/panel.html",
            context=lambda request: {"text": f"3 unread for {request.user.username}"},
        )
    )
    registry.panel_register(
        registry.DATASET_PAGE,
        Panel(
            name="subscribe",
            title="Subscribe",
            template="catalog/tests/panel.html",
            context=lambda request, d: {"text": f"Follow {d.path}"},
        ),
    )
    client.force_login(viewer)

    html = client.get(f"/datasets/acme/gold/{dataset.name}/").content.decode()

    assert ">Inbox</a>" in html
    assert "3 unread for victor" in html
    assert 'data-panel="subscribe"' in html and "Follow gold/txn_daily" in html


def test_a_failing_badge_or_a_navigation_item_without_a_page_is_left_out(
    client, viewer, clean_header, caplog
):
    def broken(request):
        raise RuntimeError("inbox table unreachable")

    registry.badge_register(Badge(name="broken", template="x.html", context=broken))
    registry.nav_register(NavItem(name="nowhere", title="Nowhere", url_name="nowhere:page"))
    client.force_login(viewer)

    page = client.get("/")

    assert page.status_code == 200 and "Nowhere" not in page.content.decode()
    assert "'broken' badge failed" in caplog.text
    assert "'nowhere' navigation item names no page" in caplog.text


def test_signed_in_only_items_are_hidden_from_anonymous_visitors(client):
    html = client.get("/").content.decode()

    assert ">Catalog</a>" in html and "API tokens" not in html


def test_a_form_posted_without_its_csrf_token_is_refused(viewer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)

    answer = client.post(
        reverse("portal:tokens"),
        {"kind": "personal", "name": "x", "scopes": ["read"], "expires_in": "30"},
    )

    assert answer.status_code == 403


def test_the_sign_in_reset_and_invitation_pages_cost_a_few_queries(
    client, steward, acme, django_assert_max_num_queries
):
    from catalog.audit import Actor
    from catalog.invitations import invitation_create

    sent = invitation_create(
        organization=acme,
        email="nina@example.com",
        role="viewer",
        actor=Actor(user=steward),
        link_for=lambda secret: f"/invitations/{secret}/",
    )
    for url in ("/sign-in/", "/password-reset/", sent.link):
        with django_assert_max_num_queries(3):
            assert client.get(url).status_code == 200


def test_a_wrong_password_on_the_sign_in_page_counts_towards_the_lockout(client, viewer, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post("/sign-in/", {"username": "victor", "password": "wrong"})

    locked = client.post("/sign-in/", {"username": "victor", "password": "pw-victor"})

    assert locked.status_code == 429
    assert "Sign-in locked for now" in locked.content.decode()
    assert "_auth_user_id" not in client.session
