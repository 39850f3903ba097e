"""A new notification email address is used only once it is confirmed from its mailbox:
the link mailed to it asks on GET and confirms on POST; mail keeps going to the address
used so far until then. Real SMTP (aiosmtpd) carries both the link and the notices."""

from __future__ import annotations

import time

import pytest
from django.core import signing
from django.db import transaction

from notifications import services
from notifications.models import Delivery, Preference
from notifications.services.preferences import EMAIL_CONFIRM_SALT, email_confirm_link
from tests.api.conftest import error_of
from tests.notifications.test_channels import promoted, send_all

pytestmark = pytest.mark.django_db(transaction=True)


def _path(link: str) -> str:
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


def _link_in(mail) -> str:
    [line] = [w for w in mail.get_content().split() if "/confirm-email/" in w]
    return line


def _notice_to(subscriber, published, smtp_server) -> str:
    """Where the next notice about `published` is mailed."""
    Delivery.objects.all().delete()
    before = len(smtp_server.messages)
    promoted(published)
    assert send_all() == 1
    return smtp_server.messages[before]["To"]


def test_a_new_address_gets_a_link_and_is_used_only_once_confirmed(
    published, subscriber, smtp_server, client
):
    services.subscription_create(
        user=subscriber, dataset=published.path, types=["new_version"], channels=["email"]
    )
    with transaction.atomic():
        services.preference_update(user=subscriber, email="sue@work.example")
    pref = Preference.objects.get(user=subscriber)
    assert (pref.email, pref.email_pending) == ("", "sue@work.example")
    [confirmation] = smtp_server.messages
    assert confirmation["To"] == "sue@work.example"
    assert confirmation["Subject"] == "Confirm your address for Dataset Publisher notifications"

    # Until confirmed, notices go to the account's address.
    assert _notice_to(subscriber, published, smtp_server) == "sue@example.com"

    path = _path(_link_in(confirmation))
    page = client.get(path)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200
    assert b"Nothing changes until you press the button" in page.content
    assert Preference.objects.get(user=subscriber).email == ""

    done = client.post(path)
    assert done.status_code == 200
    assert b"Confirmed: notifications by email now go to" in done.content
    pref.refresh_from_db()
    assert (pref.email, pref.email_pending) == ("sue@work.example", "")
    assert _notice_to(subscriber, published, smtp_server) == "sue@work.example"

    # Used once: the same link again is refused.
    again = client.post(path)
    assert again.status_code == 400
    assert b"no longer valid" in again.content


def test_a_link_for_an_address_replaced_since_is_refused(subscriber, smtp_server, client):
    with transaction.atomic():
        services.preference_update(user=subscriber, email="first@example.org")
    with transaction.atomic():
        services.preference_update(user=subscriber, email="second@example.org")
    first, second = smtp_server.messages
    refused = client.post(_path(_link_in(first)))
    assert refused.status_code == 400
    assert Preference.objects.get(user=subscriber).email == ""
    assert client.post(_path(_link_in(second))).status_code == 200
    assert Preference.objects.get(user=subscriber).email == "second@example.org"


class _SignedTwoHoursAgo(signing.TimestampSigner):
    def timestamp(self):
        return signing.b62_encode(int(time.time()) - 7200)


def test_an_altered_or_expired_link_is_refused(subscriber, client, settings):
    with transaction.atomic():
        services.preference_update(user=subscriber, email="sue@work.example")
    path = _path(email_confirm_link(user=subscriber, address="sue@work.example"))
    altered = client.post(path[:-3] + ("xx/" if not path.endswith("xx/") else "yy/"))
    assert altered.status_code == 404
    assert b"not valid" in altered.content
    # A token signed for another purpose (another salt) is no key.
    forged = signing.dumps({"u": subscriber.pk, "e": "sue@work.example"}, salt="other")
    assert client.post(f"/notifications/confirm-email/{forged}/").status_code == 404

    settings.NOTIFY_EMAIL_CONFIRM_HOURS = 1
    token = _SignedTwoHoursAgo(salt=EMAIL_CONFIRM_SALT).sign_object(
        {"u": subscriber.pk, "e": "sue@work.example"}
    )
    expired = client.post(f"/notifications/confirm-email/{token}/")
    assert expired.status_code == 400
    assert b"has expired" in expired.content
    assert Preference.objects.get(user=subscriber).email == ""
    # The refusal used nothing up: the link sent an instant ago still confirms.
    assert client.post(path).status_code == 200
    assert Preference.objects.get(user=subscriber).email == "sue@work.example"


def test_the_account_address_or_an_empty_one_needs_no_confirmation(subscriber, smtp_server):
    with transaction.atomic():
        services.preference_update(user=subscriber, email="sue@work.example")
    with transaction.atomic():
        services.preference_update(user=subscriber, email="SUE@example.com")
    pref = Preference.objects.get(user=subscriber)
    assert (pref.email, pref.email_pending) == ("", "")
    assert len(smtp_server.messages) == 1  # only the first change mailed a link


def test_the_api_shows_the_waiting_address_and_refuses_a_malformed_one(
    as_user, subscriber, smtp_server
):
    sue = as_user(subscriber, scopes=("read",))
    changed = sue.patch("/api/v1/preferences/", {"email": "sue@work.example"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["email"], changed.json()["email_pending"]) == ("", "sue@work.example")
    assert [m["To"] for m in smtp_server.messages] == ["sue@work.example"]
    bad = sue.patch("/api/v1/preferences/", {"email": "not an address"}, format="json")
    assert bad.status_code == 400
    assert "email" in error_of(bad)["message"].lower()
    # email_pending cannot be set by hand.
    sue.patch("/api/v1/preferences/", {"email_pending": "eve@evil.example"}, format="json")
    assert Preference.objects.get(user=subscriber).email_pending == "sue@work.example"


def test_the_preferences_page_says_an_address_waits_for_confirmation(
    client, subscriber, smtp_server
):
    client.force_login(subscriber)
    with transaction.atomic():
        services.preference_update(user=subscriber, email="sue@work.example")
    page = client.get("/notifications/preferences/").content.decode()
    assert 'id="email-pending"' in page
    assert "sue@work.example" in page
