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
one (`catalog.api.throttling.limits_precount`). It runs on connections of its own,
kept by the cache object (Django makes one per thread): redis-py's pool checks each
connection out and back in under a lock, with a pid check and a poll of the socket, a
third of the round trip's client time. Its keys are the app's own, not checked
character by character as Django checks a caller's keys. A value read again and again
(a client's token, on every request) can be decoded once per stored bytes (`kept`).
"""

from __future__ import annotations

import os
from collections.abc import Collection

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from hiredis import pack_command
from redis.exceptions import ConnectionError

# Decoded values kept per cache object (so per thread); a token's row is about 1 KB.
_KEPT_VALUES = 64


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
        # Idle connections of `round_trip`, and the process they were opened by.
        self._idle: list = []
        self._idle_pid = os.getpid()
        # Values decoded from the bytes stored for them (`round_trip`'s `kept`).
        self._kept: dict[bytes, object] = {}

    def round_trip(
        self, *, incr: list[tuple[str, int]], get: list[str], kept: Collection[str] = ()
    ) -> tuple[list[int], list[object | None]]:
        """Adds 1 to each counter in `incr` ((key, seconds): a new counter expires after
        `seconds`) and reads the keys in `get` (None when absent): the counts and the
        values, in one round trip. The keys are the app's own (no validation).

        The values of the keys in `kept` are decoded once per stored bytes and then
        handed out again, to this thread only, for as long as Redis holds the same bytes:
        the caller copies such a value before changing it."""
        commands = []
        for key, seconds in incr:
            key = self.make_key(key)
            commands += [("INCRBY", key, 1), ("EXPIRE", key, seconds, "NX")]
        commands += [("GET", self.make_key(key)) for key in get]
        # The commands written at once (packed by hiredis, a quarter of redis-py's
        # packing time) and their answers read in order: redis-py's pipeline object does
        # the same with several layers of bookkeeping around it.
        while True:
            connection, idle = self._connection()
            try:
                connection.send_packed_command([b"".join(map(pack_command, commands))], False)
                results = [connection.read_response() for _ in commands]
            except BaseException as exc:
                connection.disconnect()  # answers may be left unread on it
                if idle and isinstance(exc, ConnectionError):
                    # Closed while it waited (Redis restarted, or its idle timeout):
                    # so are the others. Once more, on a new connection.
                    self._idle.clear()
                    continue
                raise
            break
        self._idle.append(connection)
        counts = results[: 2 * len(incr) : 2]
        values = [
            self._decoded(stored, keep=key in kept)
            for key, stored in zip(get, results[2 * len(incr) :], strict=True)
        ]
        return counts, values

    def _decoded(self, stored: bytes | None, *, keep: bool) -> object | None:
        if stored is None:
            return None
        if not keep:
            return self._cache._serializer.loads(stored)
        value = self._kept.get(stored)
        if value is None:
            value = self._cache._serializer.loads(stored)
            if len(self._kept) >= _KEPT_VALUES:
                self._kept.clear()
            self._kept[stored] = value
        return value

    def _connection(self):
        """An idle connection of this object and True, or a new one and False (it
        connects on its first command, with the settings of the cache's writing pool:
        address, database, password, TLS, timeouts). A forked child never uses its
        parent's sockets."""
        if self._idle_pid != os.getpid():
            self._idle, self._idle_pid = [], os.getpid()
        try:
            return self._idle.pop(), True  # atomic, should two threads share the object
        except IndexError:
            pool = self._cache._get_connection_pool(write=True)
            return pool.connection_class(**pool.connection_kwargs), False

    def incr_with_expiry(self, key: str, *, seconds: int, also_get: str | None = None):
        """Adds 1 to the counter at `key` (0 when absent) and returns it; a new counter
        expires after `seconds`. With `also_get`, returns (count, the value at that
        key or None). One round trip."""
        (count,), values = self.round_trip(
            incr=[(key, seconds)], get=[] if also_get is None else [also_get]
        )
        return count if also_get is None else (count, values[0])
