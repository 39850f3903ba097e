"""Every response carries a Content-Security-Policy, and the admin and the API docs
still work under it in Chromium: no violation is reported on any page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

CSV = b"date_key,store_id,revenue\n2024-08-12,ST0001,99.5\n"

# Recorded before any page script runs; Playwright's init scripts are not subject to CSP.
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture
def watched(page):
    """The page, with every CSP violation it reports (events and console errors)."""
    page.add_init_script(LISTEN)
    reported: list[str] = []
    page.on(
        "console",
        lambda message: (
            reported.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.reported = reported
    return page


@pytest.fixture
def published(dataset, publish):
    job = publish(dataset, CSV)
    assert job.status == "succeeded", job.message
    return dataset


def violations(page) -> list[str]:
    return [*page.evaluate("window.__violations || []"), *page.reported]


def test_every_kind_of_response_carries_the_policy(client, settings, published):
    policy = settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    for url in ("/admin/login/", "/api/docs/", "/api/v1/datasets/", "/api/v1/nothing/"):
        assert client.get(url)["Content-Security-Policy"] == policy, url


def test_the_admin_renders_under_the_policy_without_a_violation(
    watched, live_server, steward, published
):
    page = watched
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "stella")
    page.fill("#id_password", "pw-stella")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    for path in (
        "/admin/",
        "/admin/catalog/dataset/",
        f"/admin/catalog/dataset/{published.pk}/change/",
        f"/admin/catalog/dataset/{published.pk}/history/",
        f"/admin/catalog/dataset/{published.pk}/versions/",
        f"/admin/catalog/dataset/{published.pk}/publish/",
        "/admin/catalog/auditentry/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert response.headers["content-security-policy"]
        page.wait_for_load_state("load")
        assert violations(page) == [], path
    # The admin's own scripts still run: the sidebar's toggle folds the navigation.
    page.goto(f"{live_server.url}/admin/catalog/dataset/")
    shifted = "#main.shifted"
    assert page.locator(shifted).count() == 1
    page.click("#toggle-nav-sidebar")
    page.wait_for_selector(shifted, state="detached")
    assert violations(page) == []


def test_the_api_docs_render_under_the_policy_without_a_violation(watched, live_server):
    page = watched
    response = page.goto(f"{live_server.url}/api/docs/")
    assert response.headers["content-security-policy"]
    page.wait_for_selector("text=Dataset Publisher API")
    page.wait_for_selector(".opblock-summary-path >> text=/api/v1/datasets/")
    assert violations(page) == []


def test_the_publish_pages_progress_script_is_a_static_file(client, steward, published):
    client.force_login(steward)
    page = client.get(f"/admin/catalog/dataset/{published.pk}/publish/").content.decode()
    assert "<script>" not in page
    assert "versioning/publish_progress.js" in page
