"""Each channel against a real receiver on loopback: what arrives, how failures are
retried, and when an endpoint is given up on."""

from __future__ import annotations

import time as clock
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import schedule, services
from notifications.models import Delivery, DeliveryStatus, WebhookEndpoint
from tests.notifications.conftest import Behaviour, record, verify

pytestmark = pytest.mark.django_db


def promoted(dataset, version="1.1.0"):
    event = record("version.promoted", dataset, version=version)
    services.event_fan_out(event=event)
    return event


def webhook_subscriber(user, dataset, url):
    services.preference_update(user=user, channels=["webhook"])
    services.subscription_create(user=user, dataset=dataset.path, types=["new_version"])
    return services.webhook_endpoint_create(user=user, url=url)


def send_all(now=None) -> int:
    ids = list(Delivery.objects.values_list("pk", flat=True))
    return services.deliveries_send(delivery_ids=ids, now=now)


# --- Webhooks ---------------------------------------------------------------------------


def test_a_webhook_is_signed_so_the_standardwebhooks_package_verifies_it(
    published, subscriber, receiver
):
    endpoint, secret = webhook_subscriber(subscriber, published, receiver.url())
    assert secret.startswith("whsec_")
    assert len(__import__("base64").b64decode(secret[6:])) >= 24
    promoted(published)
    assert send_all() == 1

    [hit] = receiver.at("/hook")
    body = verify(secret, hit)
    delivery = Delivery.objects.get()
    assert hit.headers["webhook-id"] == delivery.message_id
    assert body["type"] == "notification.new_version"
    assert body["data"]["dataset"] == "gold/txn_daily"
    assert body["data"]["version"] == "1.1.0"
    assert body["data"]["subject"] == "New version of acme/gold/txn_daily: 1.1.0"
    assert delivery.status == "sent" and delivery.response_status == 200
    # The secret is not in the database: only a seed it is derived from.
    assert secret not in str(list(WebhookEndpoint.objects.values()))


def test_during_a_rotation_both_secrets_sign_and_then_only_the_new_one(
    published, subscriber, receiver
):
    endpoint, old = webhook_subscriber(subscriber, published, receiver.url())
    endpoint, new = services.webhook_endpoint_rotate(endpoint=endpoint)
    assert new != old
    promoted(published, "1.1.0")
    send_all()
    hit = receiver.received[-1]
    assert len(hit.headers["webhook-signature"].split()) == 2
    verify(old, hit)
    verify(new, hit)

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_expires_at=timezone.now() - timedelta(seconds=1)
    )
    promoted(published, "1.2.0")
    send_all()
    hit = receiver.received[-1]
    verify(new, hit)
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        verify(old, hit)


def test_a_failing_receiver_is_retried_on_the_schedule_with_the_same_webhook_id(
    published, subscriber, receiver
):
    webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(status=500, body=b"boom")
    promoted(published)
    now = timezone.now()
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempt, delay in enumerate(expected, start=1):
        assert send_all(now=now) == 0
        d = Delivery.objects.get()
        assert (d.status, d.attempts, d.response_status) == ("failed", attempt, 500)
        assert "answered 500: boom" in d.last_error
        waited = (d.due_at - now).total_seconds()
        assert delay * 0.9 <= waited <= delay * 1.1
        # Not due yet: a send before the retry time does nothing.
        assert send_all(now=d.due_at - timedelta(milliseconds=1)) == 0
        assert Delivery.objects.get().attempts == attempt
        now = d.due_at
    send_all(now=now)
    d = Delivery.objects.get()
    assert (d.status, d.attempts) == ("dead", schedule.MAX_ATTEMPTS)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == schedule.MAX_ATTEMPTS


def test_a_receiver_that_redirects_is_not_followed(published, subscriber, receiver):
    webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(status=302, location=receiver.url("/elsewhere"))
    promoted(published)
    send_all()
    d = Delivery.objects.get()
    assert d.status == "failed"
    assert "redirects are not followed" in d.last_error
    assert receiver.at("/elsewhere") == []


def test_a_receiver_that_times_out_fails_the_attempt_within_the_timeout(
    published, subscriber, receiver, settings
):
    settings.NOTIFY_HTTP_TIMEOUT = 1
    webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(delay=3)
    promoted(published)
    started = clock.monotonic()
    send_all()
    assert clock.monotonic() - started < 2.5
    d = Delivery.objects.get()
    assert d.status == "failed"
    assert "did not answer within 1 s" in d.last_error


def test_a_410_disables_the_endpoint_and_kills_the_delivery(published, subscriber, receiver):
    endpoint, _ = webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(status=410)
    promoted(published)
    send_all()
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason == "the receiver answered 410 Gone"
    assert Delivery.objects.get(channel="webhook").status == "dead"
    # Its owner is told by email.
    notice = Delivery.objects.get(notification_type="webhook_disabled")
    assert (notice.channel, notice.user) == ("email", subscriber)


def test_an_endpoint_failing_five_days_in_a_row_is_disabled_and_its_owner_emailed(
    published, subscriber, receiver, smtp_server
):
    endpoint, _ = webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(status=503)
    promoted(published, "1.1.0")
    start = timezone.now()
    send_all(now=start)
    endpoint.refresh_from_db()
    assert endpoint.failing_since == start and endpoint.is_active

    promoted(published, "1.2.0")
    send_all(now=start + timedelta(days=4, hours=23))
    endpoint.refresh_from_db()
    assert endpoint.is_active

    promoted(published, "1.3.0")
    send_all(now=start + timedelta(days=5))
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason.startswith("failing for 5 days in a row")
    notice = Delivery.objects.get(notification_type="webhook_disabled")
    services.deliveries_send(delivery_ids=[notice.pk], now=start + timedelta(days=5))
    [mail] = smtp_server.messages
    assert mail["Subject"] == "Your webhook endpoint was disabled"
    assert receiver.url() in mail.get_body(("plain",)).get_content()


def test_a_success_resets_the_count_of_failing_days(published, subscriber, receiver):
    endpoint, _ = webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(status=500)
    promoted(published, "1.1.0")
    send_all()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    receiver.behave["/hook"] = Behaviour(status=204, body=b"")
    send_all(now=timezone.now() + timedelta(seconds=6))
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    assert Delivery.objects.get().status == "sent"


def test_a_test_event_and_a_replay_reuse_the_signing_and_the_message_id(
    published, subscriber, receiver
):
    endpoint, secret = webhook_subscriber(subscriber, published, receiver.url())
    test = services.webhook_endpoint_test(endpoint=endpoint)
    services.deliveries_send(delivery_ids=[test.pk])
    first = verify(secret, receiver.received[-1])
    assert first["type"] == "notification.webhook_test"
    services.deliveries_replay(deliveries=Delivery.objects.filter(pk=test.pk))
    assert Delivery.objects.get(pk=test.pk).status == DeliveryStatus.PENDING
    services.deliveries_send(delivery_ids=[test.pk])
    assert [r.headers["webhook-id"] for r in receiver.received] == [test.message_id] * 2


# --- Email ------------------------------------------------------------------------------


def test_an_email_has_text_and_html_and_a_one_click_unsubscribe(
    published, subscriber, smtp_server, client
):
    services.subscription_create(
        user=subscriber, dataset=published.path, types=["new_version"], channels=["email"]
    )
    promoted(published)
    assert send_all() == 1
    [mail] = smtp_server.messages
    assert mail["To"] == "sue@example.com"
    assert mail["Subject"] == "New version of acme/gold/txn_daily: 1.1.0"
    assert "Version 1.1.0 of acme/gold/txn_daily is now current" in (
        mail.get_body(("plain",)).get_content()
    )
    assert "<h2>New version of acme/gold/txn_daily: 1.1.0</h2>" in (
        mail.get_body(("html",)).get_content()
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    path = link.split("://", 1)[1].split("/", 1)[1]

    # A GET (a mail scanner following the link) only asks.
    page = client.get("/" + path)
    assert page.status_code == 200
    assert b"Nothing changes until you press the button" in page.content
    assert subscriber.subscriptions.get().is_active

    done = client.post("/" + path)
    assert done.status_code == 200
    assert b"no longer subscribed to acme/gold/txn_daily" in done.content
    assert not subscriber.subscriptions.get().is_active


def test_a_forged_unsubscribe_link_changes_nothing(client, subscriber, published):
    services.subscription_create(user=subscriber, dataset=published.path, types=["new_version"])
    response = client.post("/notifications/unsubscribe/eyJ1IjoxfQ:forged:sig/")
    assert response.status_code == 400
    assert subscriber.subscriptions.get().is_active


def test_a_refused_address_is_not_retried(published, subscriber, smtp_server):
    smtp_server.inbox.refuse.add("sue@example.com")
    services.subscription_create(
        user=subscriber, dataset=published.path, types=["new_version"], channels=["email"]
    )
    promoted(published)
    send_all()
    d = Delivery.objects.get()
    assert d.status == "dead"
    assert "refused the address" in d.last_error


def test_an_unreachable_mail_server_is_retried(published, subscriber, settings):
    from tests.notifications.conftest import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    settings.EMAIL_USE_TLS = False
    services.subscription_create(
        user=subscriber, dataset=published.path, types=["new_version"], channels=["email"]
    )
    promoted(published)
    send_all()
    d = Delivery.objects.get()
    assert (d.status, d.attempts) == ("failed", 1)
    assert "Could not send the email" in d.last_error


# --- Slack and SMS ----------------------------------------------------------------------


def test_slack_gets_text_and_blocks(published, subscriber, receiver):
    services.preference_update(
        user=subscriber, channels=["slack"], slack_webhook_url=receiver.url("/slack")
    )
    services.subscription_create(user=subscriber, dataset=published.path, types=["new_version"])
    promoted(published)
    assert send_all() == 1
    body = receiver.at("/slack")[0].json()
    assert body["text"].startswith("New version of acme/gold/txn_daily: 1.1.0\n")
    assert body["blocks"][0]["text"]["text"] == "New version of acme/gold/txn_daily: 1.1.0"


def test_sms_goes_to_a_twilio_style_provider_as_a_form_post(
    published, subscriber, receiver, settings
):
    from urllib.parse import parse_qs

    settings.NOTIFY_SMS_BACKEND = "notifications.channels.HttpSmsBackend"
    settings.NOTIFY_SMS_URL = receiver.url("/2010-04-01/Accounts/AC1/Messages.json")
    settings.NOTIFY_SMS_ACCOUNT, settings.NOTIFY_SMS_TOKEN = "AC1", "sms-token"
    settings.NOTIFY_SMS_FROM = "+15005550006"
    receiver.behave["/2010-04-01/Accounts/AC1/Messages.json"] = Behaviour(status=201)
    services.preference_update(user=subscriber, channels=["sms"], phone="+14155550123")
    services.subscription_create(user=subscriber, dataset=published.path, types=["new_version"])
    promoted(published)
    assert send_all() == 1
    [hit] = receiver.received
    form = parse_qs(hit.body.decode())
    assert form["To"] == ["+14155550123"] and form["From"] == ["+15005550006"]
    assert form["Body"][0].startswith("New version of acme/gold/txn_daily: 1.1.0 http")
    assert hit.headers["authorization"].startswith("Basic ")


def test_the_log_sms_backend_writes_a_masked_number(published, subscriber, caplog):
    services.preference_update(user=subscriber, channels=["sms"], phone="+14155550123")
    services.subscription_create(user=subscriber, dataset=published.path, types=["new_version"])
    promoted(published)
    with caplog.at_level("INFO", logger="notifications.channels"):
        assert send_all() == 1
    assert "SMS to …0123: New version of acme/gold/txn_daily" in caplog.text
    assert "+14155550123" not in caplog.text


# --- Claims -----------------------------------------------------------------------------


def test_a_worker_that_lost_its_claim_changes_nothing(published, subscriber, receiver):
    webhook_subscriber(subscriber, published, receiver.url())
    promoted(published)
    d = Delivery.objects.get()
    # Another worker holds it (a live lease): this call takes nothing.
    Delivery.objects.filter(pk=d.pk).update(
        status="sending", lease_until=timezone.now() + timedelta(minutes=5)
    )
    assert send_all() == 0
    assert receiver.received == []
    # Its worker died: the tick takes it back after the lease, and it is sent.
    swept = services.deliveries_tick(now=timezone.now() + timedelta(minutes=6))
    assert swept["swept"] == 1
    assert send_all(now=timezone.now() + timedelta(minutes=6)) == 1


def test_a_receiver_that_is_down_is_retried(published, subscriber, receiver):
    from tests.notifications.conftest import free_port

    webhook_subscriber(subscriber, published, f"http://127.0.0.1:{free_port()}/hook")
    promoted(published)
    send_all()
    d = Delivery.objects.get()
    assert (d.status, d.attempts) == ("failed", 1)
    assert "Could not reach the receiver" in d.last_error


def test_a_timing_out_receiver_costs_one_timeout_per_batch_not_one_per_message(
    published, subscriber, receiver, settings
):
    settings.NOTIFY_HTTP_TIMEOUT = 1
    webhook_subscriber(subscriber, published, receiver.url())
    receiver.behave["/hook"] = Behaviour(delay=3)
    for version in ("1.1.0", "1.2.0", "1.3.0"):
        promoted(published, version)
    started = clock.monotonic()
    send_all()
    assert clock.monotonic() - started < 2.5
    assert set(Delivery.objects.values_list("status", "attempts")) == {("failed", 1)}
