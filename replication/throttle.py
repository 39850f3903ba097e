"""Bandwidth limits shared by every worker copying over one link.

A link is a (source region, target region) pair. Each read of a throttled copy asks the
link's bucket for its bytes before passing them on; the bucket answers how long to wait.
It is a reservation form of the token bucket (the generic cell rate algorithm): the link
keeps the moment it is next free; a request for n bytes takes the slot from then (or
from now, when the link has been idle) for n / rate seconds, and the caller waits until
its slot starts before it reads them. Reading during one's own slot means the time a
read takes is not added to the pacing, so a copy runs at the limit, not below it. Any
number of callers on any number of machines get, together, the link's rate. A reader
that stalled for less than `BURST_SECONDS` (a busy CPU, a slow part) may catch up on
the slots it missed; a link idle for longer starts afresh, so idleness is never saved
up into a burst above the limit.

rclone limits bandwidth the same way in one process (`--bwlimit`: a token bucket from
golang.org/x/time/rate in fs/accounting/token_bucket.go, shared by all its transfers),
and boto3's s3transfer has a leaky bucket per transfer manager (s3transfer/bandwidth.py,
`LeakyBucket`); neither shares a limit between processes or machines. Here the slot
lives in Redis in the services mode (one Lua script, so reading and moving it is
atomic, with Redis's own clock so machines need not agree on the time), and in process
memory in the embedded mode, where one worker does all the copying. If Redis cannot be
reached the copy goes on under a process-local bucket: a limit is a courtesy to the
link, never a reason to fail a copy.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at < now - tonumber(ARGV[3]) then free_at = now end
local start = free_at
free_at = free_at + tonumber(ARGV[2]) / tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', free_at), 'EX', 3600)
return string.format('%.6f', start - now)
"""

BURST_SECONDS = 0.25

_local_lock = threading.Lock()
_local_free_at: dict[str, float] = {}
_redis = None
_script = None


def _reserve_local(link: str, rate: float, amount: int) -> float:
    with _local_lock:
        now = time.monotonic()
        start = _local_free_at.get(link, 0.0)
        if start < now - BURST_SECONDS:
            start = now
        _local_free_at[link] = start + amount / rate
        return start - now


def _reserve_redis(link: str, rate: float, amount: int) -> float:
    global _redis, _script
    if _script is None:
        import redis

        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2
        )
        _script = _redis.register_script(_RESERVE)
    return float(_script(keys=[f"replication:link:{link}"], args=[rate, amount, BURST_SECONDS]))


def link_name(source: str, target: str) -> str:
    return f"{source}>{target}"


def bytes_per_second(mbps: int) -> float:
    """Megabits per second (10^6 bits, as links are sold) in bytes per second."""
    return mbps * 1_000_000 / 8


def throttle_wait(*, link: str, mbps: int, amount: int) -> float:
    """Reserves `amount` bytes on `link` at `mbps` and returns the seconds to wait until
    their slot starts (the caller sleeps, then reads them; this never sleeps)."""
    rate = bytes_per_second(mbps)
    if settings.REDIS_URL:
        try:
            return _reserve_redis(link, rate, amount)
        except Exception as exc:
            logger.warning("Link limit in Redis unavailable (%s); limiting in this process.", exc)
    return _reserve_local(link, rate, amount)
