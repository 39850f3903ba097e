"""The stewards' workplace: templates with a preview, the delivery queue, counts."""

from __future__ import annotations

import pytest

from notifications import services
from notifications.models import Delivery, DeliveryStatus, Template
from tests.notifications.conftest import record

pytestmark = pytest.mark.django_db


def test_a_template_with_a_syntax_error_is_refused_in_the_admin_with_its_line(client, steward):
    client.force_login(steward)
    template = Template.objects.get(notification_type="new_version", channel="email")
    response = client.post(
        f"/admin/notifications/template/{template.pk}/change/",
        {
            "notification_type": "new_version",
            "channel": "email",
            "subject": "New {{ version }}",
            "body": "Line one\n{% for c in breaking_columns %}{{ c }}",
            "html": "",
        },
    )
    assert response.status_code == 200
    assert "The body has a template syntax error on line 2" in response.content.decode()
    template.refresh_from_db()
    assert template.subject.startswith("New version of")


def test_the_template_editor_previews_the_newest_event_the_steward_may_see(
    client, steward, dataset, outsider, globex, system
):
    from catalog.services import dataset_create

    record("version.promoted", dataset, version="1.4.0")
    other = dataset_create(organization=globex, layer="gold", name="secret", actor=system)
    record("version.promoted", other, version="9.9.9")
    client.force_login(steward)
    template = Template.objects.get(notification_type="new_version", channel="email")
    page = client.get(f"/admin/notifications/template/{template.pk}/change/").content.decode()
    assert "New version of acme/gold/txn_daily: 1.4.0" in page
    assert "globex" not in page


def test_stewards_replay_dead_deliveries_from_the_queue(client, steward, dataset, subscriber):
    services.subscription_create(user=subscriber, dataset=dataset.path, types=["new_version"])
    event = record("version.promoted", dataset, version="1.1.0")
    services.event_fan_out(event=event)
    delivery = Delivery.objects.get(channel="email")
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.DEAD, attempts=8, last_error="boom"
    )
    client.force_login(steward)
    listing = client.get("/admin/notifications/delivery/?status=dead")
    assert "boom" in listing.content.decode()
    response = client.post(
        "/admin/notifications/delivery/",
        {"action": "replay", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "1 delivery queued again." in response.content.decode()
    message_id = delivery.message_id
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.message_id) == ("pending", 0, message_id)


def test_a_steward_sees_only_deliveries_about_their_organisations(
    client, outsider, dataset, subscriber
):
    services.subscription_create(user=subscriber, dataset=dataset.path, types=["new_version"])
    event = record("version.promoted", dataset, version="1.1.0")
    services.event_fan_out(event=event)
    client.force_login(outsider)
    listing = client.get("/admin/notifications/delivery/").content.decode()
    assert "sue" not in listing


def test_the_subscriber_counts_page_counts_direct_and_pattern_subscribers(
    client, steward, dataset, subscriber, viewer
):
    services.subscription_create(user=subscriber, dataset=dataset.path, types=["new_version"])
    services.subscription_create(user=viewer, pattern="acme/gold/*", types=["new_version"])
    services.subscription_create(user=subscriber, pattern="*/*/txn_*", types=["new_version"])
    client.force_login(steward)
    page = client.get("/admin/notifications/subscription/counts/").content.decode()
    assert "<td>acme/gold/txn_daily</td>" in page
    assert "<td>2</td>" in page


def test_the_registry_gets_a_subscriber_column_and_an_admin_panel(dataset, subscriber):
    from catalog import registry

    services.subscription_create(user=subscriber, dataset=dataset.path, types=["new_version"])
    table = registry.columns_collect(registry.HEALTH_DASHBOARD, [dataset])
    # Other apps add their own columns to the same dashboard.
    values = dict(zip([c.name for c in table.columns], table.row(dataset), strict=True))
    assert values["subscribers"] == 1
    [panel] = [
        p
        for p in registry.panels_render(registry.DATASET_ADMIN, request=None, dataset=dataset)
        if p.name == "subscribers"
    ]
    assert "<strong>1</strong> subscriber " in panel.html


def test_the_dataset_page_panel_subscribes_and_unsubscribes_the_viewer(
    client, dataset, subscriber, rf
):
    from catalog import registry

    request = rf.get("/datasets/gold/txn_daily/")
    request.user = subscriber
    [panel] = [
        p
        for p in registry.panels_render(registry.DATASET_PAGE, request=request, dataset=dataset)
        if p.name == "subscribe"
    ]
    assert "Subscribe</button>" in panel.html
    client.force_login(subscriber)
    url = f"/notifications/datasets/{dataset.pk}/subscription/"
    response = client.post(url, {"next": "/datasets/gold/txn_daily/"})
    assert response.status_code == 302 and response["Location"] == "/datasets/gold/txn_daily/"
    sub = subscriber.subscriptions.get()
    assert sub.dataset == dataset and "schema_changed" in sub.types
    back = client.post(url, {"action": "unsubscribe", "next": "https://evil.example.com/"})
    assert back["Location"] == "/"  # never to another site
    assert not subscriber.subscriptions.get().is_active


def test_the_subscribe_button_cannot_reach_a_hidden_dataset(client, dataset, stranger):
    client.force_login(stranger)
    response = client.post(f"/notifications/datasets/{dataset.pk}/subscription/")
    assert response.status_code == 404
    assert not stranger.subscriptions.exists()
