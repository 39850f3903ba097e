"""Sending tasks to the broker without ever making a request wait for it.

The database row (a publish job, an outbox delivery) is the source of truth; sending its
task is a best-effort nudge. If the broker is down the send fails fast, is logged, and
the periodic sweepers send it again once the broker is back.
"""

from __future__ import annotations

import logging

from celery import current_app

logger = logging.getLogger(__name__)


def send_task(name: str, *args, **kwargs) -> bool:
    """Sends task `name`; returns False (and logs) instead of raising or hanging."""
    try:
        current_app.send_task(name, args=args, kwargs=kwargs, retry=False)
    except Exception:
        logger.warning("Could not send task %s; the sweeper will send it again.", name)
        return False
    return True
