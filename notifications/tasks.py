"""Notification tasks, on the `notifications` queue. Thin: ids in, one service call."""

from __future__ import annotations

from celery import shared_task

from notifications import services


@shared_task(name="notifications.send")
def send(delivery_ids: list[int]) -> int:
    return services.deliveries_send(delivery_ids=delivery_ids)


@shared_task(name="notifications.send_digest")
def send_digest(user_id: int, channel: str, endpoint_id: int | None = None) -> int:
    return services.digest_send(user_id=user_id, channel=channel, endpoint_id=endpoint_id)


@shared_task(name="notifications.tick")
def tick() -> dict:
    return services.deliveries_tick()
