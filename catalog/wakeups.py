"""Waking a waiting request when a row it waits for changes, across processes.

A request that holds its answer until something happens elsewhere (a client following a
publish job with `?wait=`) would otherwise read the row again every few tens of
milliseconds: with many clients waiting at once, those reads cost the web processes more
CPU than the work they wait for. Instead the waiter subscribes to a Redis channel named
for the row, and the process that changes the row publishes on it after its commit.

The row stays the source of truth and the message only says "read it now": the waiter
reads the row once after subscribing (so a change committed before it subscribed is not
missed) and again on every message, and also every `recheck` seconds, so a message lost
with Redis costs at most that long. Without Redis (the embedded mode), or while it is
down, the waiter reads the row every `poll` seconds instead. A wake-up never fails a
commit: a publish that cannot reach Redis is logged and the waiters' rechecks see it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.core.cache import caches
from django.db import transaction

from catalog.api.cache_backend import ReusingRedisCache
from catalog.api.generations import cache_failed, cache_usable

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "wakeup:"


def _redis():
    """The shared cache's Redis client, or None (the embedded mode, or Redis just failed)."""
    cache = caches["default"]
    if not isinstance(cache, ReusingRedisCache) or not cache_usable():
        return None
    return cache._cache.get_client(write=True)


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def wakeup_on_commit(name: str) -> None:
    """Wakes the waiters on `name` once the current transaction commits (at once outside
    one)."""
    transaction.on_commit(lambda: wakeup_send(name))


def wakeup_send(name: str) -> None:
    """Wakes every process waiting on `name` now; never raises."""
    client = _redis()
    if client is None:
        return
    try:
        client.publish(CHANNEL_PREFIX + name, b"1")
    except _redis_errors():
        cache_failed(f"The wake-up for {name} was not sent")


def wait_until(
    name: str,
    done: Callable[[], bool],
    *,
    seconds: float,
    recheck: float = 1.0,
    poll: float = 0.1,
) -> bool:
    """Waits at most `seconds` until `done()` (a read of the row) is true, reading it on
    every wake-up on `name` and at least every `recheck` seconds; returns its last
    answer. Without Redis it reads every `poll` seconds."""
    deadline = time.monotonic() + max(0.0, seconds)
    client = _redis()
    subscription = None
    if client is not None:
        try:
            subscription = client.pubsub(ignore_subscribe_messages=True)
            subscription.subscribe(CHANNEL_PREFIX + name)
        except _redis_errors():
            cache_failed(f"Could not wait for {name} on Redis")
            subscription = None
    try:
        while True:
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if subscription is None:
                time.sleep(min(poll, left))
                continue
            try:
                _next_message(subscription, min(recheck, left))
            except _redis_errors():
                cache_failed(f"Lost the wait for {name} on Redis")
                subscription.close()
                subscription = None
    finally:
        if subscription is not None:
            subscription.close()


def _next_message(subscription, timeout: float) -> None:
    """Returns on the first message, or after `timeout` seconds."""
    until = time.monotonic() + timeout
    while (left := until - time.monotonic()) > 0:
        # Subscribe confirmations come back as None before the timeout: keep waiting.
        if subscription.get_message(timeout=left) is not None:
            return
