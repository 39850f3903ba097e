"""Django's Redis cache, with one Redis client per connection pool instead of per call.

Django's `RedisCacheClient.get_client()` builds a new `redis.Redis` for every cache
operation. With redis-py 8 that object is not cheap: its constructor fills a table of
several hundred response callbacks, about 0.3 ms each time, which on an API request
that authenticates, counts its rate limit and reads a cached answer was more than the
Redis round trips themselves. A `redis.Redis` is safe to share (the pool hands out the
connections, and notices a fork), so one per pool is kept and reused.

Also `round_trip`: counters that expire, counted together with reads of other keys in
one round trip, where the cache API needs an existence check, an increment and a
separate add for each first count, and a round trip per call. An authenticated API
request reads its token, counts its rate limit and reads the catalog's generation in
one (`catalog.api.throttling.limits_precount`).
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

    def round_trip(
        self, *, incr: list[tuple[str, int]], get: list[str]
    ) -> tuple[list[int], list[object | None]]:
        """Adds 1 to each counter in `incr` ((key, seconds): a new counter expires after
        `seconds`) and reads the keys in `get` (None when absent): the counts and the
        values, in one round trip."""
        keys = [self.make_and_validate_key(key) for key, _ in incr]
        commands = []
        for key, (_, seconds) in zip(keys, incr, strict=True):
            commands += [("INCRBY", key, 1), ("EXPIRE", key, seconds, "NX")]
        commands += [("GET", self.make_and_validate_key(key)) for key in get]
        # The commands written at once on a pooled connection and their answers read in
        # order: redis-py's pipeline object does the same with several layers of
        # bookkeeping around it, which cost a third of the round trip's client time.
        pool = self._cache.get_client(keys[0] if keys else None, write=True).connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            results = [connection.read_response() for _ in commands]
        except BaseException:
            connection.disconnect()  # answers may be left unread on it
            raise
        finally:
            pool.release(connection)
        counts = results[: 2 * len(incr) : 2]
        loads = self._cache._serializer.loads
        values = [None if v is None else loads(v) for v in results[2 * len(incr) :]]
        return counts, values

    def incr_with_expiry(self, key: str, *, seconds: int, also_get: str | None = None):
        """Adds 1 to the counter at `key` (0 when absent) and returns it; a new counter
        expires after `seconds`. With `also_get`, returns (count, the value at that
        key or None). One round trip."""
        (count,), values = self.round_trip(
            incr=[(key, seconds)], get=[] if also_get is None else [also_get]
        )
        return count if also_get is None else (count, values[0])
