"""Rate limits through the shared cache (Redis in the services mode), so every web
process counts against one budget per caller.

A fixed window per caller and scope: one counter per window, counted and given its
expiry in one Redis round trip, cheaper than DRF's list-of-timestamps history (a read
and a write of a growing list). The same round trip reads the catalog's generation for
the API's cached answers (`catalog.api.generations`), and for a token this process has
seen before it also reads the token (`limits_precount`, called by the token
authentication): an authenticated read makes one round trip in all. Rates come from
settings (`API_RATES`) at call time, so they can be changed per deployment and per test.
Signed-URL requests have their own, lower budget (seed 001: 10 a minute per user);
everything else shares the general one.

When the counter cannot be reached the limit cannot be checked: the answer is 503 with
Retry-After (`LimitUnavailable`), never a 500 and never a request let through unlimited.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

from catalog.addresses import client_ip
from catalog.api.cache_backend import ReusingRedisCache
from catalog.api.exceptions import LimitUnavailable
from catalog.api.generations import GENERATION_KEY, cache_failed, cache_usable, generation_given
from catalog.api.rates import parse_rate

logger = logging.getLogger(__name__)
_PRECOUNTED = "_api_limits_precounted"


class ApiRateThrottle(BaseThrottle):
    scope = "api"

    def _ident(self, request, view) -> str:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"u{user.pk}"
        return f"ip{client_ip(request)}"

    def counter(self, ident: str, now: float) -> tuple[str, int, float]:
        """The counter's key for `ident` at `now`, its lifetime, and the seconds left
        in its window."""
        limit, period = parse_rate(settings.API_RATES[self.scope])
        window = int(now // period)
        return (
            f"throttle:{self.scope}:{ident}:{window}",
            period + 1,
            (window + 1) * period - now,
        )

    def allow_request(self, request, view) -> bool:
        limit, _ = parse_rate(settings.API_RATES[self.scope])
        ident = self._ident(request, view)
        # A DRF request wraps Django's; the portal's download page passes Django's own.
        http_request = getattr(request, "_request", request)
        precounted = getattr(http_request, _PRECOUNTED, {}).pop(self.scope, None)
        if precounted is not None and precounted[0] == ident:
            _, count, self._wait = precounted
            return count <= limit
        key, seconds, self._wait = self.counter(ident, time.time())
        cache = caches["default"]
        if not cache_usable():
            raise LimitUnavailable()
        try:
            if isinstance(cache, ReusingRedisCache):
                # The catalog's generation rides along: cached answers need no round trip.
                (count,), (generation,) = cache.round_trip(
                    incr=[(key, seconds)], get=[GENERATION_KEY]
                )
                generation_given(request, generation)
            else:
                count = _file_cache_count(cache, key, seconds)
        except Exception:
            cache_failed("The rate limit cannot be counted")
            raise LimitUnavailable() from None
        return count <= limit

    def wait(self) -> float:
        return self._wait


class SignedUrlRateThrottle(ApiRateThrottle):
    scope = "signed_url"


def _file_cache_count(cache, key: str, seconds: int) -> int:
    try:
        return cache.incr(key)
    except ValueError:
        # First request in this window; `add` loses to a concurrent first request.
        return 1 if cache.add(key, 1, seconds) else cache.incr(key)


def limits_precount(request, *, throttles, user_id: int, also_get: str) -> object | None:
    """Counts `throttles` (the view's) as user `user_id`, reads the catalog's generation
    and the value at `also_get`, in one round trip; returns that value (None when absent
    or when the cache cannot be reached: the caller then asks the database, and the
    throttle itself answers 503 when it cannot count). The value may be the one an
    earlier request of this thread got (`round_trip`'s `kept`): copy it to change it.

    Only in the services mode (Redis); elsewhere, the value at `also_get` alone."""
    cache = caches["default"]
    if not cache_usable():
        return None
    throttles = [throttle for throttle in throttles if isinstance(throttle, ApiRateThrottle)]
    try:
        if not isinstance(cache, ReusingRedisCache):
            return cache.get(also_get)
        ident, now = f"u{user_id}", time.time()
        counters = [(throttle.scope, *throttle.counter(ident, now)) for throttle in throttles]
        counts, (value, generation) = cache.round_trip(
            incr=[(key, seconds) for _, key, seconds, _ in counters],
            get=[also_get, GENERATION_KEY],
            kept=(also_get,),
        )
    except Exception:
        cache_failed("The token and rate limits cannot be read")
        return None
    generation_given(request, generation)
    setattr(
        getattr(request, "_request", request),
        _PRECOUNTED,
        {
            scope: (ident, count, wait)
            for (scope, _, _, wait), count in zip(counters, counts, strict=True)
        },
    )
    return value
