"""The notifications API: status, body, effect, the one error shape."""

from __future__ import annotations

import pytest
from django.db import transaction

from catalog import events
from notifications import services
from notifications.models import Delivery, InboxItem, Preference, Subscription, WebhookEndpoint
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

BASE = "/api/v1"


@pytest.fixture
def sue(as_user, subscriber):
    return as_user(subscriber, scopes=("read",))


@pytest.fixture
def sue_admin(as_user, subscriber):
    return as_user(subscriber, scopes=("admin",))


def test_preferences_are_made_with_defaults_and_changed_with_patch(sue, subscriber):
    first = sue.get(f"{BASE}/preferences/")
    assert first.status_code == 200
    assert first.json()["channels"] == ["inapp", "email"]
    assert first.json()["time_zone"] == "UTC"
    changed = sue.patch(
        f"{BASE}/preferences/",
        {
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "time_zone": "Europe/Paris",
            "phone": "+1 415 555 0123",
            "frequency": "daily",
        },
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    body = changed.json()
    assert (body["quiet_start"], body["quiet_end"], body["phone"]) == (
        "22:00",
        "07:00",
        "+14155550123",
    )
    assert Preference.objects.get(user=subscriber).frequency == "daily"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time_zone": "Moon/Base"}, "'Moon/Base' is not a known IANA time zone"),
        ({"quiet_start": "08:00", "quiet_end": "08:00"}, "start and end at the same time"),
        ({"phone": "555-0100"}, "is not a valid phone number"),
        ({"slack_webhook_url": "http://169.254.169.254/"}, "cloud metadata"),
        ({"channels": ["fax"]}, "fax"),
        ({"digest_hour": 24}, "digest_hour"),
    ],
)
def test_bad_preferences_answer_400_in_the_error_shape(sue, change, message):
    response = sue.patch(f"{BASE}/preferences/", change, format="json")
    assert response.status_code == 400
    assert message in error_of(response)["message"]


def test_subscribing_to_a_dataset_and_listing_it(sue, published, subscriber):
    response = sue.post(
        f"{BASE}/subscriptions/",
        {
            "dataset": "gold/txn_daily",
            "types": ["new_version", "schema_changed"],
            "channels": ["email", "inapp"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["dataset"], body["organization"]) == ("gold/txn_daily", "acme")
    listing = sue.get(f"{BASE}/subscriptions/").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == body["id"]
    patched = sue.patch(
        f"{BASE}/subscriptions/{body['id']}/", {"frequency": "weekly"}, format="json"
    )
    assert patched.json()["frequency"] == "weekly"
    assert sue.delete(f"{BASE}/subscriptions/{body['id']}/").status_code == 204
    assert not Subscription.objects.exists()


def test_a_private_dataset_of_another_organisation_answers_404(as_user, stranger, published):
    client = as_user(stranger, scopes=("read",))
    response = client.post(
        f"{BASE}/subscriptions/",
        {"dataset": "gold/txn_daily", "types": ["new_version"]},
        format="json",
    )
    assert response.status_code == 404
    assert error_of(response)["message"] == "No dataset 'gold/txn_daily'."


def test_another_users_subscription_is_not_found(as_user, sue, viewer, published):
    theirs = services.subscription_create(
        user=viewer, dataset="gold/txn_daily", types=["new_version"]
    )
    assert sue.get(f"{BASE}/subscriptions/{theirs.pk}/").status_code == 404
    assert sue.delete(f"{BASE}/subscriptions/{theirs.pk}/").status_code == 404


def test_the_inbox_lists_unread_messages_and_marks_them_read(sue, subscriber, published):
    services.subscription_create(user=subscriber, dataset="gold/txn_daily", types=["new_version"])
    for version in ("1.1.0", "1.2.0"):
        with transaction.atomic():
            event = events.event_record(
                topic="version.promoted",
                payload={
                    "dataset_id": published.pk,
                    "dataset": "gold/txn_daily",
                    "organization": "acme",
                    "version": version,
                },
                organization=published.organization,
            )
        services.event_fan_out(event=event)
    unread = sue.get(f"{BASE}/notifications/?unread=true").json()
    assert unread["count"] == 2
    newest = unread["results"][0]
    assert newest["title"] == "New version of acme/gold/txn_daily: 1.2.0"
    assert newest["dataset"] == "acme/gold/txn_daily" and newest["read"] is False
    marked = sue.post(f"{BASE}/notifications/{newest['id']}/read/")
    assert marked.status_code == 200 and marked.json()["read"] is True
    assert sue.get(f"{BASE}/notifications/?unread=true").json()["count"] == 1
    assert sue.post(f"{BASE}/notifications/read-all/").json() == {"marked": 1}
    assert not InboxItem.objects.filter(read_at__isnull=True).exists()


def test_a_webhook_endpoint_shows_its_secret_once(sue_admin, receiver):
    made = sue_admin.post(f"{BASE}/webhook-endpoints/", {"url": receiver.url()}, format="json")
    assert made.status_code == 201, made.json()
    secret = made.json()["secret"]
    assert secret.startswith("whsec_")
    shown = sue_admin.get(f"{BASE}/webhook-endpoints/{made.json()['id']}/").json()
    assert "secret" not in shown
    rotated = sue_admin.post(f"{BASE}/webhook-endpoints/{made.json()['id']}/rotate-secret/")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (secret, "")
    assert rotated.json()["previous_expires_at"]


def test_changing_webhook_endpoints_needs_the_admin_scope(sue, receiver):
    response = sue.post(f"{BASE}/webhook-endpoints/", {"url": receiver.url()}, format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/h",
        "http://10.0.0.1/h",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "https://user:pw@example.com/h",
    ],
)
def test_unsafe_webhook_urls_answer_400(sue_admin, url):
    response = sue_admin.post(f"{BASE}/webhook-endpoints/", {"url": url}, format="json")
    assert response.status_code == 400
    assert error_of(response)["details"]["field"] == "url"


def test_a_test_event_is_queued_and_listed_with_the_endpoints_deliveries(sue_admin, receiver):
    endpoint = sue_admin.post(
        f"{BASE}/webhook-endpoints/", {"url": receiver.url()}, format="json"
    ).json()
    queued = sue_admin.post(f"{BASE}/webhook-endpoints/{endpoint['id']}/test/")
    assert queued.status_code == 202
    assert queued.json()["status"] == "pending"
    services.deliveries_send(delivery_ids=[queued.json()["id"]])
    listed = sue_admin.get(f"{BASE}/webhook-endpoints/{endpoint['id']}/deliveries/").json()
    assert [(d["notification_type"], d["status"]) for d in listed["results"]] == [
        ("webhook_test", "sent")
    ]
    assert receiver.received[0].headers["webhook-id"] == listed["results"][0]["message_id"]


def test_replay_sends_one_delivery_or_every_failed_one_since_a_time(
    sue_admin, receiver, subscriber
):
    endpoint = sue_admin.post(
        f"{BASE}/webhook-endpoints/", {"url": receiver.url()}, format="json"
    ).json()
    ids = [
        services.webhook_endpoint_test(endpoint=WebhookEndpoint.objects.get(pk=endpoint["id"])).pk
        for _ in range(3)
    ]
    Delivery.objects.filter(pk__in=ids[:2]).update(status="dead")
    Delivery.objects.filter(pk=ids[2]).update(status="sent")
    url = f"{BASE}/webhook-endpoints/{endpoint['id']}"
    one = sue_admin.post(f"{url}/replay/", {"delivery": ids[2]}, format="json")
    assert one.status_code == 202 and one.json() == {"replayed": 1}
    assert Delivery.objects.get(pk=ids[2]).status == "pending"
    again = sue_admin.post(f"{url}/replay/", {"delivery": ids[2]}, format="json")
    assert again.status_code == 409
    assert "on its way already" in error_of(again)["message"]
    neither = sue_admin.post(f"{url}/replay/", {}, format="json")
    assert neither.status_code == 400 and "either delivery or since" in error_of(neither)["message"]
    since = sue_admin.post(f"{url}/replay/", {"since": "2000-01-01T00:00:00Z"}, format="json")
    assert since.json() == {"replayed": 2}
    bad = sue_admin.post(f"{url}/replay/", {"since": "yesterday"}, format="json")
    assert bad.status_code == 400 and "since" in error_of(bad)["details"]


def test_disabling_and_enabling_an_endpoint(sue_admin, receiver):
    endpoint = sue_admin.post(
        f"{BASE}/webhook-endpoints/", {"url": receiver.url()}, format="json"
    ).json()
    url = f"{BASE}/webhook-endpoints/{endpoint['id']}/"
    off = sue_admin.patch(url, {"is_active": False}, format="json").json()
    assert off["is_active"] is False and off["disabled_reason"] == "Disabled by its owner."
    refused = sue_admin.post(f"{url}test/")
    assert refused.status_code == 400 and "disabled" in error_of(refused)["message"]
    on = sue_admin.patch(url, {"is_active": True}, format="json").json()
    assert on["is_active"] is True and on["disabled_reason"] == ""
