"""Handing deliveries to workers, in batches that keep receivers apart.

Webhooks go one task per endpoint, so a slow or dead receiver holds up only its own
deliveries while other workers serve the rest; every other channel goes in batches (an
email batch shares one SMTP connection). Sending a task is a nudge: the rows are the
truth, and the periodic tick sends again whatever a lost task left.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings

from catalog.queue import send_task
from notifications.models import Channel, Delivery

SEND_TASK = "notifications.send"


def deliveries_dispatch(deliveries: Iterable[Delivery]) -> int:
    """Sends `notifications.send` tasks for `deliveries`; returns how many tasks."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for d in deliveries:
        endpoint = d.endpoint_id if d.channel == Channel.WEBHOOK else None
        groups[(d.channel, endpoint)].append(d.pk)
    size = settings.NOTIFY_BATCH_SIZE
    sent = 0
    for ids in groups.values():
        for start in range(0, len(ids), size):
            send_task(SEND_TASK, ids[start : start + size])
            sent += 1
    return sent
