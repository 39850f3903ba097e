"""Django's Redis cache, with one Redis client per connection pool instead of per call.

Django's `RedisCacheClient.get_client()` builds a new `redis.Redis` for every cache
operation. With redis-py 8 that object is not cheap: its constructor fills a table of
several hundred response callbacks, about 0.3 ms each time, which on an API request
that authenticates, counts its rate limit and reads a cached answer was more than the
Redis round trips themselves. A `redis.Redis` is safe to share (the pool hands out the
connections, and notices a fork), so one per pool is kept and reused.

Also `incr_with_expiry`: one round trip for a counter that expires, where the cache API
needs an existence check, an increment, and a separate add for the first one; it can
read one more key in the same round trip.
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _ReusingClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)
            client = self._clients[index] = self._client(connection_pool=pool)
        return client


class ReusingRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient

    def incr_with_expiry(self, key: str, *, seconds: int, also_get: str | None = None):
        """Adds 1 to the counter at `key` (0 when absent) and returns it; a new counter
        expires after `seconds`. With `also_get`, returns (count, the value at that
        key or None). One round trip."""
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)
        with client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, seconds, nx=True)
            if also_get is not None:
                pipe.get(self.make_and_validate_key(also_get))
            results = pipe.execute()
        if also_get is None:
            return results[0]
        value = results[2]
        return results[0], None if value is None else self._cache._serializer.loads(value)
