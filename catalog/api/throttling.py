"""Rate limits through the shared cache (Redis in the services mode), so every web
process counts against one budget per caller.

A fixed window per caller and scope: one counter per window, counted and given its
expiry in one Redis round trip (`incr_with_expiry`), cheaper than DRF's
list-of-timestamps history (a read and a write of a growing list). The same round trip
reads the catalog's generation for the API's cached answers (`catalog.api.generations`).
Rates come from settings (`API_RATES`) at call time, so they can be changed per
deployment and per test. Signed-URL requests have their own, lower budget (seed 001:
10 a minute per user); everything else shares the general one.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

from catalog.addresses import client_ip
from catalog.api.cache_backend import ReusingRedisCache
from catalog.api.generations import GENERATION_KEY, generation_given
from catalog.api.rates import parse_rate


class ApiRateThrottle(BaseThrottle):
    scope = "api"

    def _ident(self, request, view) -> str:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"u{user.pk}"
        return f"ip{client_ip(request)}"

    def allow_request(self, request, view) -> bool:
        cache = caches["default"]
        limit, period = parse_rate(settings.API_RATES[self.scope])
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{self._ident(request, view)}:{window}"
        if isinstance(cache, ReusingRedisCache):
            # The catalog's generation rides along: cached answers need no round trip.
            count, generation = cache.incr_with_expiry(
                key, seconds=period + 1, also_get=GENERATION_KEY
            )
            generation_given(request, generation)
        else:
            try:
                count = cache.incr(key)
            except ValueError:
                # First request in this window; `add` loses to a concurrent first request.
                count = 1 if cache.add(key, 1, period + 1) else cache.incr(key)
        self._wait = (window + 1) * period - now
        return count <= limit

    def wait(self) -> float:
        return self._wait


class SignedUrlRateThrottle(ApiRateThrottle):
    scope = "signed_url"
