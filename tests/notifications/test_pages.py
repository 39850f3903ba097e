"""The subscriber's notification pages through Django's test client: subscriptions,
preferences, webhook endpoints, the inbox and the header's unread count; what each
refuses and says, whose rows each shows, and in how many queries whatever their number."""

from __future__ import annotations

from datetime import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications import services
from notifications.models import Delivery, InboxItem, Preference, Subscription, WebhookEndpoint
from tests.notifications.conftest import verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, subscriber):
    client.force_login(subscriber)
    return client


def _inbox(user, count: int, *, dataset=None, start: int = 0) -> list[InboxItem]:
    return InboxItem.objects.bulk_create(
        InboxItem(
            user=user,
            key=f"page-test:{user.pk}:{i}",
            dataset=dataset,
            notification_type="new_version",
            title=f"Message {i}",
            body="A new version.",
        )
        for i in range(start, start + count)
    )


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


# --- Subscriptions ----------------------------------------------------------------------


def test_a_subscriber_subscribes_to_a_dataset_with_channels_and_a_digest(
    signed_in, subscriber, dataset
):
    answer = signed_in.post(
        reverse("notifications:subscription-new"),
        {
            "dataset": str(dataset.pk),
            "types": ["schema_changed", "new_version"],
            "channels": ["inapp", "webhook"],
            "frequency": "daily",
        },
    )

    assert answer.status_code == 302
    sub = Subscription.objects.get(user=subscriber)
    assert (sub.dataset, sub.types, sub.channels, sub.frequency) == (
        dataset,
        ["schema_changed", "new_version"],
        ["inapp", "webhook"],
        "daily",
    )
    listed = signed_in.get(reverse("notifications:subscriptions")).content.decode()
    assert "acme/gold/txn_daily" in listed and "Daily digest" in listed


def test_a_subscription_to_a_pattern_is_kept_lowercase_and_a_bad_pattern_is_refused(
    signed_in, subscriber
):
    url = reverse("notifications:subscription-new")
    good = signed_in.post(url, {"pattern": "Acme/Gold/*", "types": ["new_version"]})
    bad = signed_in.post(url, {"pattern": "gold-only", "types": ["new_version"]})

    assert good.status_code == 302
    assert Subscription.objects.get(user=subscriber).pattern == "acme/gold/*"
    assert bad.status_code == 400
    assert "write a glob over &lt;org&gt;/&lt;layer&gt;/&lt;name&gt;" in bad.content.decode()


def test_a_subscription_needs_one_target_and_one_type(signed_in, dataset):
    url = reverse("notifications:subscription-new")
    neither = signed_in.post(url, {"types": ["new_version"]})
    both = signed_in.post(
        url, {"dataset": str(dataset.pk), "pattern": "acme/*/*", "types": ["new_version"]}
    )
    no_type = signed_in.post(url, {"dataset": str(dataset.pk)})

    assert {neither.status_code, both.status_code, no_type.status_code} == {400}
    assert "Choose a dataset or write a pattern" in neither.content.decode()
    assert "Choose a dataset or write a pattern" in both.content.decode()
    assert "Choose at least one kind of notification." in no_type.content.decode()
    assert not Subscription.objects.exists()


def test_a_threshold_without_the_usage_type_is_refused_on_its_field(signed_in, dataset):
    answer = signed_in.post(
        reverse("notifications:subscription-new"),
        {"dataset": str(dataset.pk), "types": ["new_version"], "threshold": "100"},
    )

    assert answer.status_code == 400
    assert answer.context["form"].errors["threshold"] == [
        "threshold: only a subscription to usage_threshold takes a threshold."
    ]


def test_another_organisations_private_dataset_cannot_be_chosen_or_seen(client, stranger, dataset):
    client.force_login(stranger)
    url = reverse("notifications:subscription-new")

    form = client.get(url).content.decode()
    answer = client.post(url, {"dataset": str(dataset.pk), "types": ["new_version"]})

    assert "txn_daily" not in form
    assert answer.status_code == 400 and not Subscription.objects.exists()


def test_a_subscription_is_edited_and_deleted_by_its_owner_only(
    client, signed_in, subscriber, stranger, dataset
):
    sub = services.subscription_create(user=subscriber, dataset=dataset, types=["new_version"])
    edit = reverse("notifications:subscription", args=[sub.pk])
    delete = reverse("notifications:subscription-delete", args=[sub.pk])

    saved = signed_in.post(edit, {"types": ["quality_failed"], "frequency": "weekly"})
    sub.refresh_from_db()
    assert saved.status_code == 302
    assert (sub.types, sub.frequency) == (["quality_failed"], "weekly")

    client.force_login(stranger)
    assert client.get(edit).status_code == 404
    assert client.post(delete).status_code == 404
    assert Subscription.objects.filter(pk=sub.pk).exists()

    client.force_login(subscriber)
    assert client.post(delete).status_code == 302
    assert not Subscription.objects.filter(pk=sub.pk).exists()


# --- Preferences ------------------------------------------------------------------------


def _preferences(**changes) -> dict:
    return {
        "channels": ["inapp", "email"],
        "email": "",
        "phone": "",
        "slack_webhook_url": "",
        "frequency": "immediate",
        "quiet_start": "",
        "quiet_end": "",
        "time_zone": "UTC",
        "digest_hour": "8",
        "digest_weekday": "0",
        **changes,
    }


def test_preferences_save_quiet_hours_at_night_in_a_time_zone_and_a_normalised_phone(
    signed_in, subscriber
):
    answer = signed_in.post(
        reverse("notifications:preferences"),
        _preferences(
            channels=["inapp", "sms"],
            phone="+44 20 7946 0958",
            quiet_start="22:00",
            quiet_end="07:00",
            time_zone="Europe/Paris",
            digest_hour="18",
            digest_weekday="4",
        ),
    )

    assert answer.status_code == 302
    pref = Preference.objects.get(user=subscriber)
    assert (pref.quiet_start, pref.quiet_end, pref.time_zone) == (
        time(22),
        time(7),
        "Europe/Paris",
    )
    assert (pref.phone, pref.channels, pref.digest_hour, pref.digest_weekday) == (
        "+442079460958",
        ["inapp", "sms"],
        18,
        4,
    )
    page = signed_in.get(reverse("notifications:preferences")).content.decode()
    assert '<option value="Europe/Paris" selected>' in page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone", "Mars/Olympus is not a known time zone"),
        (
            {"quiet_start": "22:00", "quiet_end": "22:00"},
            "quiet_end",
            "Quiet hours that start and end at the same time",
        ),
        ({"quiet_start": "22:00"}, "quiet_end", "Quiet hours need both a start and an end"),
        ({"phone": "12345"}, "phone", "is not a valid phone number; write it in E.164 form"),
    ],
    ids=["unknown zone", "equal start and end", "start without end", "bad phone"],
)
def test_bad_preferences_are_refused_with_a_clear_error_on_the_field(
    signed_in, subscriber, changes, field, message
):
    answer = signed_in.post(reverse("notifications:preferences"), _preferences(**changes))

    assert answer.status_code == 400
    assert any(message in e for e in answer.context["form"].errors[field])
    assert not Preference.objects.filter(user=subscriber, time_zone="Mars/Olympus").exists()


# --- Webhook endpoints ------------------------------------------------------------------


def test_an_endpoint_is_added_with_its_secret_shown_once(signed_in, subscriber, receiver):
    answer = signed_in.post(
        reverse("notifications:webhooks"), {"url": receiver.url(), "description": "ETL"}
    )

    secret = answer.context["made"]["secret"]
    assert answer.status_code == 200 and secret.startswith("whsec_")
    assert secret in answer.content.decode()
    endpoint = WebhookEndpoint.objects.get(user=subscriber)
    assert secret not in str(endpoint.__dict__)
    again = signed_in.get(reverse("notifications:webhooks")).content.decode()
    assert receiver.url() in again and secret not in again


def test_an_endpoint_on_a_private_address_is_refused(signed_in, settings):
    settings.NOTIFY_ALLOW_PRIVATE_HOSTS = []

    answer = signed_in.post(reverse("notifications:webhooks"), {"url": "http://127.0.0.1:9/h"})

    assert answer.status_code == 400
    assert "loopback" in " ".join(answer.context["form"].errors["url"])
    assert not WebhookEndpoint.objects.exists()


def test_a_rotated_secret_is_shown_once_and_signs_a_test_and_a_replay(
    signed_in, subscriber, receiver
):
    endpoint, old = services.webhook_endpoint_create(user=subscriber, url=receiver.url())
    page = reverse("notifications:webhook", args=[endpoint.pk])

    rotated = signed_in.post(reverse("notifications:webhook-rotate", args=[endpoint.pk]))
    new = rotated.context["secret"]
    assert new.startswith("whsec_") and new != old and new in rotated.content.decode()
    assert new not in signed_in.get(page).content.decode()

    assert signed_in.post(reverse("notifications:webhook-test", args=[endpoint.pk])).status_code
    delivery = Delivery.objects.get(endpoint=endpoint)
    services.deliveries_send(delivery_ids=[delivery.pk])
    assert verify(new, receiver.received[0])["type"] == "notification.webhook_test"
    listed = signed_in.get(page).content.decode()
    assert delivery.message_id in listed and "Replay" in listed

    signed_in.post(reverse("notifications:webhook-replay", args=[endpoint.pk, delivery.pk]))
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    services.deliveries_send(delivery_ids=[delivery.pk])
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id


def test_a_disabled_endpoint_gets_no_test_and_can_be_enabled_again(signed_in, subscriber, receiver):
    endpoint, _ = services.webhook_endpoint_create(user=subscriber, url=receiver.url())
    toggle = reverse("notifications:webhook-toggle", args=[endpoint.pk])

    signed_in.post(toggle)
    refused = signed_in.post(reverse("notifications:webhook-test", args=[endpoint.pk]), follow=True)
    assert "This endpoint is disabled" in refused.content.decode()
    assert not Delivery.objects.exists()

    signed_in.post(toggle)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_at is None


def test_nobody_sees_rotates_replays_or_deletes_another_users_endpoint(
    client, subscriber, stranger, receiver
):
    endpoint, _ = services.webhook_endpoint_create(user=subscriber, url=receiver.url())
    client.force_login(stranger)

    assert client.get(reverse("notifications:webhook", args=[endpoint.pk])).status_code == 404
    for name in ("webhook-rotate", "webhook-test", "webhook-toggle", "webhook-delete"):
        assert client.post(reverse(f"notifications:{name}", args=[endpoint.pk])).status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.is_active and not endpoint.previous_secret_seed
    assert receiver.url() not in client.get(reverse("notifications:webhooks")).content.decode()


# --- Inbox and the unread badge ---------------------------------------------------------


def test_the_inbox_shows_unread_first_marks_one_and_all_read_and_the_badge_counts(
    signed_in, subscriber, dataset
):
    older, newer = _inbox(subscriber, 2, dataset=dataset)
    services_read = reverse("notifications:inbox-read", args=[newer.pk])
    signed_in.post(services_read)
    _inbox(subscriber, 1, start=2)

    page = signed_in.get(reverse("notifications:inbox"))
    titles = [item.title for item in page.context["page"].object_list]
    html = page.content.decode()
    assert titles[-1] == "Message 1"  # the one read goes last, whatever its age
    assert 'aria-label="Inbox: 2 unread"' in html
    newest = signed_in.get(reverse("notifications:inbox"), {"order": "newest"})
    assert [i.title for i in newest.context["page"].object_list] == [
        "Message 2",
        "Message 1",
        "Message 0",
    ]

    signed_in.post(reverse("notifications:inbox-read-all"))
    assert not InboxItem.objects.filter(user=subscriber, read_at__isnull=True).exists()
    assert 'aria-label="Inbox: 0 unread"' in signed_in.get("/").content.decode()


def test_the_inbox_is_paginated_and_another_users_message_cannot_be_marked(
    client, signed_in, subscriber, stranger
):
    _inbox(subscriber, 30)
    [theirs] = _inbox(stranger, 1, start=100)

    first = signed_in.get(reverse("notifications:inbox"))
    second = signed_in.get(reverse("notifications:inbox"), {"page": "2"})
    marked = signed_in.post(reverse("notifications:inbox-read", args=[theirs.pk]))

    assert len(first.context["page"].object_list) == 25
    assert len(second.context["page"].object_list) == 5
    assert marked.status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_the_header_links_the_notification_pages_for_signed_in_users_only(client, subscriber):
    anonymous = client.get("/").content.decode()
    client.force_login(subscriber)
    signed = client.get("/").content.decode()

    for name in ("inbox", "subscriptions", "preferences", "webhooks"):
        url = reverse(f"notifications:{name}")
        assert url not in anonymous and url in signed
    assert reverse("notifications:inbox") in client.get(reverse("portal:tokens")).content.decode()


@pytest.mark.parametrize("name", ["inbox", "subscriptions", "preferences", "webhooks"])
def test_the_pages_ask_an_anonymous_visitor_to_sign_in(client, name):
    answer = client.get(reverse(f"notifications:{name}"))

    assert answer.status_code == 302 and answer["Location"].startswith(reverse("portal:login"))


def test_every_page_has_a_title_a_main_landmark_and_csrf_protected_forms(
    signed_in, subscriber, dataset, receiver
):
    endpoint, _ = services.webhook_endpoint_create(user=subscriber, url=receiver.url())
    sub = services.subscription_create(user=subscriber, dataset=dataset, types=["new_version"])
    _inbox(subscriber, 1)
    urls = [
        reverse("notifications:inbox"),
        reverse("notifications:subscriptions"),
        reverse("notifications:subscription-new"),
        reverse("notifications:subscription", args=[sub.pk]),
        reverse("notifications:preferences"),
        reverse("notifications:webhooks"),
        reverse("notifications:webhook", args=[endpoint.pk]),
    ]
    for url in urls:
        html = signed_in.get(url).content.decode()
        assert "<title>" in html and '<main id="main">' in html, url
        assert html.count('method="post"') == html.count("csrfmiddlewaretoken"), url


# --- Query counts -----------------------------------------------------------------------


def _fill(user, dataset, receiver, count: int, *, start: int) -> WebhookEndpoint:
    """`count` more subscriptions, inbox messages, endpoints and deliveries for `user`."""
    for i in range(start, start + count):
        services.subscription_create(
            user=user, pattern=f"acme/*/t{i}", types=["new_version"], channels=["inapp"]
        )
        services.subscription_create(user=user, dataset=dataset, types=["quality_failed"])
        endpoint, _ = services.webhook_endpoint_create(user=user, url=receiver.url(f"/h{i}"))
    _inbox(user, count, dataset=dataset, start=start)
    first = WebhookEndpoint.objects.filter(user=user).order_by("pk").first()
    Delivery.objects.bulk_create(
        Delivery(
            key=f"q:{i}",
            user=user,
            endpoint=first,
            channel="webhook",
            notification_type="new_version",
            status="sent",
            due_at=first.created_at,
        )
        for i in range(start, start + count)
    )
    return first


def test_each_page_costs_the_same_queries_for_3_or_30_rows(
    signed_in, subscriber, dataset, receiver
):
    endpoint = _fill(subscriber, dataset, receiver, 3, start=0)
    services.preference_get(user=subscriber)  # made on the first visit, counted apart
    sub = Subscription.objects.filter(user=subscriber).first()
    urls = [
        reverse("notifications:inbox"),
        reverse("notifications:subscriptions"),
        reverse("notifications:subscription-new"),
        reverse("notifications:subscription", args=[sub.pk]),
        reverse("notifications:preferences"),
        reverse("notifications:webhooks"),
        reverse("notifications:webhook", args=[endpoint.pk]),
    ]
    few = {url: _queries(signed_in, url) for url in urls}

    _fill(subscriber, dataset, receiver, 27, start=3)
    many = {url: _queries(signed_in, url) for url in urls}

    assert many == few


def test_the_dataset_pages_panel_leads_to_a_subscription_form_for_that_dataset(
    signed_in, subscriber, dataset
):
    page = reverse("portal:dataset", args=["acme", "gold", "txn_daily"])
    form_url = f"{reverse('notifications:subscription-new')}?dataset={dataset.pk}"

    assert form_url in signed_in.get(page).content.decode()
    form = signed_in.get(form_url).content.decode()
    assert f'<option value="{dataset.pk}" selected>acme/gold/txn_daily</option>' in form

    sub = services.subscription_create(user=subscriber, dataset=dataset, types=["new_version"])
    edit = reverse("notifications:subscription", args=[sub.pk])
    assert edit in signed_in.get(page).content.decode()


def test_a_delivery_still_on_its_way_is_not_replayed_and_the_page_says_so(
    signed_in, subscriber, receiver
):
    endpoint, _ = services.webhook_endpoint_create(user=subscriber, url=receiver.url())
    delivery = services.webhook_endpoint_test(endpoint=endpoint)
    replay = reverse("notifications:webhook-replay", args=[endpoint.pk, delivery.pk])

    answer = signed_in.post(replay, follow=True)
    missing = signed_in.post(
        reverse("notifications:webhook-replay", args=[endpoint.pk, delivery.pk + 1000])
    )

    assert "still on its way; it cannot be replayed yet" in answer.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 0
    assert missing.status_code == 404
