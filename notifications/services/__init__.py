"""The notifications services, by topic: preferences and subscriptions, the fan-out of
events into deliveries, and sending them."""

from notifications.services.delivery import (
    deliveries_replay,
    deliveries_send,
    deliveries_tick,
    digest_send,
    unsubscribe_token,
    unsubscribe_url,
    webhook_endpoint_test,
)
from notifications.services.fanout import breaking_change_reach, event_fan_out
from notifications.services.preferences import (
    preference_get,
    preference_update,
    subscription_create,
    subscription_update,
    webhook_endpoint_create,
    webhook_endpoint_rotate,
    webhook_endpoint_update,
)

__all__ = [
    "breaking_change_reach",
    "deliveries_replay",
    "deliveries_send",
    "deliveries_tick",
    "digest_send",
    "event_fan_out",
    "preference_get",
    "preference_update",
    "subscription_create",
    "subscription_update",
    "unsubscribe_token",
    "unsubscribe_url",
    "webhook_endpoint_create",
    "webhook_endpoint_rotate",
    "webhook_endpoint_test",
    "webhook_endpoint_update",
]
