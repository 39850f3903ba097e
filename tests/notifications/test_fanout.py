"""From events to deliveries: who is told, on which channels, once, and when."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from catalog.models import Visibility
from notifications import services
from notifications.models import Delivery, DeliveryStatus, InboxItem
from tests.notifications.conftest import CSV_BREAKING, CSV_V1_MORE, at, record

pytestmark = pytest.mark.django_db


def subscribe(user, dataset=None, **kwargs):
    kwargs.setdefault("types", ["new_version"])
    if dataset is not None:
        kwargs["dataset"] = dataset.path
    return services.subscription_create(user=user, **kwargs)


def test_a_new_version_reaches_the_inbox_at_once_and_queues_the_email(
    published, subscriber, publish
):
    subscribe(subscriber, published, types=["new_version"])
    publish(published, CSV_V1_MORE)
    event = events_of("version.published")[-1]
    services.event_fan_out(event=event)

    item = InboxItem.objects.get(user=subscriber)
    assert item.title == "New version of acme/gold/txn_daily: 1.0.1"
    assert item.read_at is None
    email = Delivery.objects.get(user=subscriber)
    assert (email.channel, email.status, email.notification_type) == (
        "email",
        "pending",
        "new_version",
    )


def events_of(topic):
    from catalog.models import DomainEvent

    return list(DomainEvent.objects.filter(topic=topic).order_by("id"))


def test_an_event_handled_twice_or_matched_by_two_subscriptions_notifies_once(
    published, subscriber
):
    subscribe(subscriber, published, types=["new_version"])
    subscribe(subscriber, pattern="acme/gold/*", types=["dataset_updated", "new_version"])
    event = record("version.promoted", published, version="1.1.0", version_id=None)
    services.event_fan_out(event=event)
    services.event_fan_out(event=event)
    assert InboxItem.objects.filter(user=subscriber).count() == 1
    assert Delivery.objects.filter(user=subscriber, channel="email").count() == 1


def test_a_breaking_publish_is_a_schema_change_naming_the_columns(published, subscriber, publish):
    subscribe(subscriber, published, types=["schema_changed", "new_version"])
    job = publish(published, CSV_BREAKING, version="2.0.0")
    assert job.status == "succeeded", job.message
    services.event_fan_out(event=events_of("version.published")[-1])
    item = InboxItem.objects.get(user=subscriber)
    assert item.notification_type == "schema_changed"
    assert item.title == "Breaking schema change in acme/gold/txn_daily 2.0.0"
    assert "Removed: revenue." in item.body
    assert "Breaking: revenue." in item.body


def test_nobody_is_told_about_a_dataset_they_may_not_see(published, subscriber, stranger):
    subscribe(subscriber, published)
    # The stranger's pattern names acme's datasets, which are private to acme.
    subscribe(stranger, pattern="acme/*/*")
    services.event_fan_out(event=record("version.promoted", published, version="1.1.0"))
    assert set(InboxItem.objects.values_list("user__username", flat=True)) == {"sue"}


def test_a_subscriber_who_lost_access_gets_nothing_at_send_time(
    published, subscriber, system, smtp_server
):
    from catalog.models import Membership

    subscribe(subscriber, published, channels=["email"])
    services.event_fan_out(event=record("version.promoted", published, version="1.1.0"))
    delivery = Delivery.objects.get(user=subscriber)
    Membership.objects.filter(user=subscriber).delete()
    assert services.deliveries_send(delivery_ids=[delivery.pk]) == 0
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEAD
    assert "may no longer see" in delivery.last_error
    assert smtp_server.messages == []


def test_a_public_dataset_reaches_users_outside_its_organisation(published, stranger):
    published.visibility = Visibility.PUBLIC
    published.save()
    subscribe(stranger, pattern="acme/gold/txn_*")
    services.event_fan_out(event=record("version.promoted", published, version="1.1.0"))
    assert InboxItem.objects.filter(user=stranger).count() == 1


def test_a_usage_threshold_tells_only_those_whose_threshold_was_reached(
    published, subscriber, steward
):
    subscribe(subscriber, published, types=["usage_threshold"], threshold=100)
    subscribe(steward, published, types=["usage_threshold"], threshold=1000)
    services.event_fan_out(
        event=record("usage.threshold_crossed", published, metric="downloads", value=250)
    )
    assert list(InboxItem.objects.values_list("user__username", "title")) == [
        ("sue", "Usage warning: acme/gold/txn_daily reached 250 downloads")
    ]


def test_quality_failures_come_from_refused_files_and_stale_datasets(published, subscriber):
    subscribe(subscriber, published, types=["quality_failed"])
    services.event_fan_out(
        event=record("publish.failed", published, message="The file is empty.", job_id="x")
    )
    services.event_fan_out(
        event=record("dataset.stale", published, version="1.0.0", freshness_hours=24, hours_late=3)
    )
    bodies = list(InboxItem.objects.order_by("id").values_list("body", flat=True))
    assert bodies[0].startswith("A file for acme/gold/txn_daily was refused: The file is empty.")
    assert bodies[1].startswith(
        "acme/gold/txn_daily has had no new version for 3 hours past its 24-hour"
    )


def test_replication_deprecation_and_rollback_events_reach_their_subscribers(published, subscriber):
    subscribe(
        subscriber,
        published,
        types=["replication_completed", "version_deprecated", "version_rolled_back"],
    )
    services.event_fan_out(
        event=record("version.replicated", published, version="1.0.0", regions=["eu", "apac"])
    )
    services.event_fan_out(
        event=record(
            "version.deprecated",
            published,
            version="1.0.0",
            message="Use 2.0.0",
            sunset="2030-01-01",
        )
    )
    services.event_fan_out(
        event=record(
            "version.rolled_back",
            published,
            from_version="1.1.0",
            to_version="1.0.0",
            reason="double counts",
        )
    )
    titles = list(InboxItem.objects.order_by("id").values_list("title", flat=True))
    assert titles == [
        "acme/gold/txn_daily 1.0.0 is replicated",
        "acme/gold/txn_daily 1.0.0 is deprecated",
        "acme/gold/txn_daily was rolled back to 1.0.0",
    ]


# --- Quiet hours and digests ----------------------------------------------------------


def test_quiet_hours_across_midnight_hold_a_notification_until_they_end(published, subscriber):
    services.preference_update(
        user=subscriber,
        quiet_start=time(22, 0),
        quiet_end=time(7, 0),
        time_zone="Europe/Paris",
        channels=["inapp", "email"],
    )
    subscribe(subscriber, published)
    # 23:30 UTC is 00:30 in Paris (winter): quiet until 07:00 Paris, 06:00 UTC.
    now = at("2026-01-15 23:30")
    services.event_fan_out(event=record("version.promoted", published, version="1.1"), now=now)
    held = Delivery.objects.filter(user=subscriber).order_by("channel")
    assert [(d.channel, d.status, d.due_at) for d in held] == [
        ("email", "held", at("2026-01-16 06:00")),
        ("inapp", "held", at("2026-01-16 06:00")),
    ]
    assert not InboxItem.objects.exists()

    assert services.deliveries_tick(now=at("2026-01-16 05:59"))["released"] == 0
    assert services.deliveries_tick(now=at("2026-01-16 06:00"))["released"] == 2
    inapp = Delivery.objects.get(user=subscriber, channel="inapp")
    assert inapp.status == "pending"
    services.deliveries_send(delivery_ids=[inapp.pk], now=at("2026-01-16 06:00"))
    assert InboxItem.objects.filter(user=subscriber).count() == 1


def test_a_daily_digest_gathers_a_users_notifications_into_one_message(
    published, subscriber, smtp_server
):
    services.preference_update(
        user=subscriber, frequency="daily", digest_hour=8, channels=["email"]
    )
    subscribe(subscriber, published, types=["new_version", "version_deprecated"])
    morning = at("2026-03-02 09:15")
    services.event_fan_out(event=record("version.promoted", published, version="1.1"), now=morning)
    services.event_fan_out(
        event=record("version.deprecated", published, version="1.0", message="old"),
        now=morning + timedelta(hours=2),
    )
    rows = Delivery.objects.filter(user=subscriber)
    assert {(d.status, d.due_at) for d in rows} == {("scheduled", at("2026-03-03 08:00"))}

    assert services.deliveries_tick(now=at("2026-03-03 07:59"))["digests"] == 0
    assert (
        services.digest_send(user_id=subscriber.pk, channel="email", now=at("2026-03-03 07:59"))
        == 0
    )
    assert (
        services.digest_send(user_id=subscriber.pk, channel="email", now=at("2026-03-03 08:00"))
        == 2
    )

    assert len(smtp_server.messages) == 1
    mail = smtp_server.messages[0]
    assert mail["Subject"] == "2 notifications about your datasets"
    text = mail.get_body(("plain",)).get_content()
    assert "- New version of acme/gold/txn_daily: 1.1" in text
    assert "- acme/gold/txn_daily 1.0 is deprecated" in text
    assert set(rows.values_list("status", "digest_of")) == {("sent", 2)}


def test_a_weekly_digest_waits_for_the_chosen_weekday_and_hour_in_the_users_zone(
    published, subscriber
):
    services.preference_update(
        user=subscriber,
        frequency="weekly",
        digest_weekday=4,
        digest_hour=17,
        time_zone="America/New_York",
    )
    subscribe(subscriber, published)
    # Monday 2026-03-02 12:00 UTC; Friday 17:00 in New York (EST) is 22:00 UTC.
    services.event_fan_out(
        event=record("version.promoted", published, version="1.1"), now=at("2026-03-02 12:00")
    )
    assert {d.due_at for d in Delivery.objects.all()} == {at("2026-03-06 22:00")}


# --- Breaking changes reach their readers -----------------------------------------------


def test_readers_of_the_previous_major_are_told_once_without_a_subscription(
    published, subscriber, stranger, steward
):
    payload = dict(
        version="2.0.0",
        version_id=4242,
        previous_major=1,
        user_ids=[subscriber.pk, stranger.pk],
    )
    event = record("usage.breaking_change_consumers", published, **payload)
    services.breaking_change_reach(event=event)
    again = record("usage.breaking_change_consumers", published, **payload)
    services.breaking_change_reach(event=again)

    # The stranger may not see acme's private dataset: not told.
    assert list(InboxItem.objects.values_list("user__username", "notification_type")) == [
        ("sue", "breaking_change")
    ]
    assert list(Delivery.objects.values_list("user__username", "channel")) == [("sue", "email")]
    assert InboxItem.objects.get().title == "acme/gold/txn_daily 2.0.0 breaks what you read"


def test_the_breaking_reach_skips_channels_a_subscription_already_used(
    published, subscriber, publish
):
    subscribe(subscriber, published, types=["schema_changed"], channels=["inapp"])
    job = publish(published, CSV_BREAKING, version="2.0.0")
    services.event_fan_out(event=events_of("version.published")[-1])
    event = record(
        "usage.breaking_change_consumers",
        published,
        version="2.0.0",
        version_id=job.version_id,
        previous_major=1,
        user_ids=[subscriber.pk],
    )
    services.breaking_change_reach(event=event)
    assert InboxItem.objects.filter(user=subscriber).count() == 1
    assert list(Delivery.objects.values_list("channel", "notification_type")) == [
        ("email", "breaking_change")
    ]


def test_a_digest_due_in_quiet_hours_waits_for_their_end(published, subscriber):
    services.preference_update(
        user=subscriber,
        frequency="daily",
        digest_hour=6,
        quiet_start=time(22, 0),
        quiet_end=time(7, 30),
        channels=["email"],
    )
    subscribe(subscriber, published)
    services.event_fan_out(
        event=record("version.promoted", published, version="1.1"), now=at("2026-03-02 12:00")
    )
    assert [(d.status, d.due_at) for d in Delivery.objects.all()] == [
        ("scheduled", at("2026-03-03 07:30"))
    ]


def test_the_tick_sends_again_what_a_lost_task_left_pending(published, subscriber, settings):
    subscribe(subscriber, published, channels=["email"])
    made = at("2026-03-02 12:00")
    services.event_fan_out(event=record("version.promoted", published, version="1.1"), now=made)
    soon = made + timedelta(seconds=settings.NOTIFY_REDISPATCH_SECONDS - 1)
    assert services.deliveries_tick(now=soon)["dispatched"] == 0
    later = made + timedelta(seconds=settings.NOTIFY_REDISPATCH_SECONDS)
    assert services.deliveries_tick(now=later)["dispatched"] == 1


def test_an_event_nobody_subscribed_to_reads_only_the_dataset_and_the_subscriptions(
    published, subscriber, publish, django_assert_num_queries
):
    publish(published, CSV_V1_MORE)
    event = events_of("version.published")[-1]
    # The dataset, its subscriptions, the pattern subscriptions: not the version's facts.
    with django_assert_num_queries(3):
        assert services.event_fan_out(event=event) == 0
    assert not Delivery.objects.exists() and not InboxItem.objects.exists()
