"""The subscriber's notification journey in Chromium on a phone: sign in, subscribe to
`gold/txn_daily` for schema changes, set quiet hours at night in a time zone, add a
webhook endpoint (its secret shown once), then read the inbox entry that a real breaking
publish puts there through the outbox. Every page is checked with axe-core and at 390 px.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from catalog import events
from notifications.models import InboxItem, Preference, Subscription, WebhookEndpoint
from tests.browser.conftest import Checks
from tests.notifications.conftest import CSV_BREAKING, CSV_V1

pytestmark = pytest.mark.django_db(transaction=True)


def _zone_awake_now() -> str:
    """A time zone where it is now day, so quiet hours from 22:00 to 07:00 hold nothing
    back while the test runs, whenever it runs."""
    now = datetime.now(UTC)
    for zone in ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Pacific/Auckland"):
        if 8 <= now.astimezone(ZoneInfo(zone)).hour < 21:
            return zone
    raise AssertionError("some zone is awake at any hour")


def test_a_subscriber_subscribes_sets_quiet_hours_adds_a_webhook_and_reads_the_inbox(
    phone, live_server, viewer, dataset, publish, receiver, tmp_path
):
    checks = Checks(tmp_path)
    base = live_server.url
    assert publish(dataset, CSV_V1).status == "succeeded"
    events.events_deliver(delivery_ids=events.events_pending_ids())
    page = phone

    page.goto(f"{base}/sign-in/?next=/notifications/subscriptions/")
    page.fill("#id_username", "victor")
    page.fill("#id_password", "pw-victor")
    page.click("#sign-in button[type=submit]")
    page.wait_for_url(re.compile(r"/notifications/subscriptions/$"))
    checks.page(page, "subscriptions-empty")

    # Subscribe to the dataset for schema changes, in the inbox and by webhook.
    page.click("text=New subscription")
    checks.page(page, "subscription-new")
    page.select_option("#id_dataset", label="acme/gold/txn_daily")
    for box in page.locator("#id_types input").all():
        box.uncheck()
    page.check("#id_types input[value=schema_changed]")
    page.check("#id_channels input[value=inapp]")
    page.check("#id_channels input[value=webhook]")
    page.click("#subscription-form button[type=submit]")
    page.wait_for_selector("text=You are subscribed to acme/gold/txn_daily.")
    checks.page(page, "subscriptions")

    # Quiet hours at night, in a zone picked from the list; a bad phone is refused first.
    zone = _zone_awake_now()
    page.click("nav[aria-label=Main] >> text=Preferences")
    page.fill("#id_phone", "12345")
    page.fill("#id_quiet_start", "22:00")
    page.fill("#id_quiet_end", "07:00")
    page.select_option("#id_time_zone", zone)
    page.click("#preferences-form button[type=submit]")
    page.wait_for_selector("text=is not a valid phone number")
    checks.page(page, "preferences-error")
    page.fill("#id_phone", "")
    page.click("#preferences-form button[type=submit]")
    page.wait_for_selector("text=Your notification preferences are saved.")
    checks.page(page, "preferences")
    pref = Preference.objects.get(user=viewer)
    assert (str(pref.quiet_start), str(pref.quiet_end), pref.time_zone) == (
        "22:00:00",
        "07:00:00",
        zone,
    )

    # A webhook endpoint: the secret is shown once.
    page.click("nav[aria-label=Main] >> text=Webhooks")
    page.fill("#id_url", receiver.url())
    page.click("#webhook-form button[type=submit]")
    secret = page.locator("#webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    checks.page(page, "webhook-added")
    page.click(f"#endpoint-list >> text={receiver.url()}")
    checks.page(page, "webhook")
    assert secret not in page.content()
    assert WebhookEndpoint.objects.filter(user=viewer).count() == 1

    # A breaking publish, handed to the handlers by the outbox, lands in the inbox.
    assert publish(dataset, CSV_BREAKING, version="2.0.0").status == "succeeded"
    events.events_deliver(delivery_ids=events.events_pending_ids())
    assert InboxItem.objects.filter(user=viewer, notification_type="schema_changed").exists()

    page.goto(f"{base}/")
    badge = page.locator("[data-badge=unread] a")
    assert badge.inner_text() == "1 unread"
    badge.click()
    page.wait_for_url(re.compile(r"/notifications/inbox/"))
    entry = page.locator("#inbox-list li.unread")
    assert entry.count() == 1
    assert "txn_daily" in entry.inner_text() and "2.0.0" in entry.inner_text()
    checks.page(page, "inbox")
    entry.locator("button", has_text="Mark read").click()
    page.wait_for_selector("#inbox-list li.read")
    assert page.locator("[data-badge=unread] a").inner_text() == "0 unread"
    checks.page(page, "inbox-read")
    assert Subscription.objects.get(user=viewer).types == ["schema_changed"]
