"""Whole flows through real workers: a breaking publish reaches a subscriber once on each
channel, and a slow receiver holds up nobody else."""

from __future__ import annotations

import pytest

from catalog import events
from catalog.models import DomainEvent, EventDelivery
from notifications import services
from notifications.models import Delivery, InboxItem
from tests.conftest import wait_for
from tests.notifications.conftest import CSV_BREAKING, Behaviour, verify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def worker_env(smtp_server) -> dict[str, str]:
    return {**smtp_server.env(), "NOTIFY_ALLOW_PRIVATE_HOSTS": "127.0.0.1"}


@pytest.fixture
def published(published):
    """The first version's events handled before anyone subscribes."""
    events.events_deliver(delivery_ids=events.events_pending_ids())
    return published


def test_a_breaking_publish_sends_one_email_one_signed_webhook_and_one_inbox_entry(
    published, subscriber, publish, receiver, smtp_server, start_worker
):
    services.preference_update(user=subscriber, channels=["email", "webhook", "inapp"])
    services.subscription_create(
        user=subscriber, dataset="gold/txn_daily", types=["schema_changed", "new_version"]
    )
    _, secret = services.webhook_endpoint_create(user=subscriber, url=receiver.url())
    start_worker(env=worker_env(smtp_server))

    job = publish(published, CSV_BREAKING, version="2.0.0")
    assert job.status == "succeeded", job.message

    wait_for(
        lambda: (
            Delivery.objects.filter(status="sent").count() == 2
            and InboxItem.objects.exists()
            and smtp_server.messages
            and receiver.received
        ),
        message="the email, the webhook and the inbox entry",
    )
    # The outbox hands the event over again (as it may): nothing new goes out.
    published_event = DomainEvent.objects.get(topic="version.published", payload__version="2.0.0")
    handler = "notifications.handlers.on_event"
    EventDelivery.objects.filter(event=published_event, handler=handler).update(
        delivered_at=None, lease_until=None
    )
    events.events_deliver(
        delivery_ids=EventDelivery.objects.filter(event=published_event).values_list(
            "pk", flat=True
        )
    )
    assert InboxItem.objects.filter(user=subscriber).count() == 1
    assert Delivery.objects.count() == 2
    assert len(smtp_server.messages) == 1 and len(receiver.received) == 1

    [mail] = smtp_server.messages
    assert mail["Subject"] == "Breaking schema change in acme/gold/txn_daily 2.0.0"
    assert "Removed: revenue." in mail.get_body(("plain",)).get_content()
    body = verify(secret, receiver.received[0])
    assert body["data"]["breaking"] is True
    assert body["data"]["removed_columns"] == ["revenue"]
    assert InboxItem.objects.get().notification_type == "schema_changed"


def test_a_slow_receiver_does_not_delay_another_receivers_delivery(
    published, subscriber, viewer, receiver, smtp_server, start_worker
):
    for user, path in ((subscriber, "/slow"), (viewer, "/fast")):
        services.preference_update(user=user, channels=["webhook"])
        services.subscription_create(user=user, dataset="gold/txn_daily", types=["new_version"])
        services.webhook_endpoint_create(user=user, url=receiver.url(path))
    receiver.behave["/slow"] = Behaviour(delay=4)
    start_worker(env=worker_env(smtp_server), concurrency=2)

    from django.db import transaction

    with transaction.atomic():
        events.event_record(
            topic="version.promoted",
            payload={
                "dataset_id": published.pk,
                "dataset": "gold/txn_daily",
                "organization": "acme",
                "version": "1.1.0",
            },
            organization=published.organization,
        )
    wait_for(lambda: receiver.at("/fast"), message="the fast receiver's webhook")
    # The slow receiver is still holding its own request when the fast one is served.
    assert receiver.at("/slow") == []
    wait_for(lambda: receiver.at("/slow"), message="the slow receiver's webhook")
    wait_for(
        lambda: Delivery.objects.filter(status="sent").count() == 2, message="both marked sent"
    )
