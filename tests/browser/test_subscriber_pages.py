"""The subscriber's journeys in Chromium: a steward invites a colleague by email (a real
SMTP server on loopback), who joins, searches the catalog, reads and previews
`gold/txn_daily`, downloads it, makes and revokes a token, resets a password and signs
out. Every page is checked with axe-core (no serious or critical violation) and at
390 px wide (nothing wider than the window); screenshots land in the test's tmp_path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from catalog.services import dataset_update
from tests.browser.conftest import Checks
from tests.conftest import wait_for
from tests.versioning.conftest import base_csv

pytestmark = pytest.mark.django_db(transaction=True)

LINK = re.compile(r"https?://[^\s]+/invitations/[^\s/]+/")
RESET = re.compile(r"https?://[^\s]+/password-reset/[^\s/]+/[^\s/]+/")


class Inbox:
    """An SMTP server's handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 Message accepted"


@pytest.fixture
def smtp(settings, free_tcp_port):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_tcp_port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_tcp_port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield inbox
    controller.stop()


@pytest.fixture
def catalog_data(dataset, publish, system):
    dataset_update(
        dataset=dataset,
        actor=system,
        tags=["sales", "daily"],
        freshness_hours=24,
        description="One row per store and day: revenue and units.",
    )
    publish(dataset, base_csv())
    publish(dataset, base_csv(store_id=None), version="2.0.0")
    return dataset


def test_an_invited_colleague_joins_finds_reads_downloads_and_makes_a_token(
    browser, phone, live_server, steward, catalog_data, smtp, tmp_path, django_user_model
):
    checks = Checks(tmp_path)
    base = live_server.url
    steward.email = "stella@example.com"
    steward.save()

    # The steward signs in on the site and invites a colleague from the admin.
    desk = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    admin = desk.new_page()
    admin.goto(f"{base}/sign-in/?next=/admin/catalog/invitation/add/")
    checks.page(admin, "sign-in-desktop", width=1400)
    admin.fill("#id_username", "stella")
    admin.fill("#id_password", "pw-stella")
    admin.click("#sign-in button[type=submit]")
    admin.wait_for_url(re.compile(r"/admin/catalog/invitation/add/"))
    admin.fill("#id_email", "nina@example.com")
    admin.select_option("#id_role", "viewer")
    admin.click("input[value='Send the invitation']")
    admin.wait_for_selector("text=Invitation sent to nina@example.com")
    # The steward's own pages fit 1400 px (the full SHA-256 once widened them).
    admin.goto(f"{base}/admin/catalog/dataset/{catalog_data.pk}/change/")
    checks.wide(admin, "admin-dataset-1400", width=1400)
    for name, url in (
        ("versions", "/admin/versioning/datasetversion/"),
        ("datasets", "/admin/catalog/dataset/"),
        ("jobs", "/admin/versioning/publishjob/"),
        ("history", f"/admin/catalog/dataset/{catalog_data.pk}/versions/"),
    ):
        admin.goto(base + url)
        checks.wide(admin, f"admin-{name}-1400", width=1400)
    desk.close()

    message = wait_for(lambda: smtp.messages, message="the invitation email")[0]
    link = LINK.search(message).group(0)

    # The colleague opens the link on a phone and joins.
    page = phone
    page.goto(link)
    checks.page(page, "invitation")
    page.fill("#id_username", "nina")
    page.fill("#id_password1", "a long secret 42")
    page.fill("#id_password2", "a long secret 42")
    page.click("#invitation-form button[type=submit]")
    page.wait_for_selector("text=Welcome to Acme")
    assert "Signed in as nina" in page.inner_text("header")
    checks.page(page, "catalog")

    # Search, then read the dataset.
    page.fill("input[name=search]", "daily")
    page.select_option("#id_tag", "sales")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_selector("#result-count")
    assert "1 dataset match" in page.inner_text("#result-count")
    checks.page(page, "search")
    page.click("text=gold/txn_daily")
    page.wait_for_selector("#preview-table")
    assert page.locator("#preview-table tbody tr").count() == 3
    assert "Breaking: store_id" in page.inner_text("main")
    assert "Fresh" in page.inner_text("main")
    checks.page(page, "dataset")

    # Download through a signed URL: the bytes are the current version's.
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes() == base_csv(store_id=None)

    # Make a token (shown once), then revoke it.
    page.click("nav >> text=API tokens")
    checks.page(page, "tokens")
    page.fill("#id_name", "notebook")
    page.check("input[name=scopes][value=read]")
    page.click("#token-form button[type=submit]")
    secret = page.inner_text("#token-secret")
    assert secret.startswith("dpt_")
    checks.page(page, "token-made")
    page.goto(f"{base}/tokens/")
    assert secret not in page.content()
    page.click("button[aria-label='Revoke notebook']")
    page.wait_for_selector("text=stopped working now")
    assert "revoked" in page.inner_text("#token-list")

    # Sign out; the catalog then shows public datasets only.
    page.click("header button:has-text('Sign out')")
    page.wait_for_selector("text=You see public datasets only")
    checks.page(page, "catalog-anonymous")

    # A forgotten password: the reset email's link sets a new one.
    page.goto(f"{base}/sign-in/")
    page.click("text=Forgot your password?")
    checks.page(page, "password-reset")
    page.fill("#id_email", "nina@example.com")
    page.click("#password-reset button[type=submit]")
    page.wait_for_selector("text=Check your email")
    reset = wait_for(
        lambda: [m for m in smtp.messages if "password-reset" in m], message="the reset email"
    )[0]
    page.goto(RESET.search(reset).group(0))
    page.wait_for_selector("#password-set")
    checks.page(page, "password-new")
    page.fill("#id_new_password1", "another long secret 7")
    page.fill("#id_new_password2", "another long secret 7")
    page.click("#password-set button[type=submit]")
    page.wait_for_selector("text=Your new password is set")
    assert django_user_model.objects.get(username="nina").check_password("another long secret 7")

    # A hidden or unknown dataset is a plain 404 page.
    answer = page.goto(f"{base}/datasets/acme/gold/txn_daily/")
    assert answer.status == 404
    checks.page(page, "not-found")
    assert checks.shots >= 15
