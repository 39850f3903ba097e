"""The catalog's generation: a number in the shared cache that changes whenever anything
the API shows about datasets may have changed, so that answers which change only on
publish can be cached and checked against it.

What moves it is the database itself: every change to what a caller may see is a save
of a `Dataset`, `Membership` or `Organization`, or a domain event in the outbox
(publish, rollback, deprecation, a new manifest), written in the same transaction as the
change. The handlers below, connected in `CatalogConfig.ready()`, move the generation at
once and again after commit, so a request that read the database before the commit can
never store its answer under the generation that follows it. A change is therefore seen
by the very next call, from any web process.

One number for the whole catalog, not one per organisation: a signed-in caller also
sees other organisations' public and internal datasets, and membership decides which
private ones. Publishing is rare next to reading, so a change anywhere making every
cached answer miss once is cheap, and the check is cheap too: the rate limit reads the
generation in the round trip it makes anyway (`generation_given`), and an answer this
process has seen under that generation is served from memory; otherwise the answer and
the generation come in one `get_many` (`cached_read`).

A generation starts at the clock in nanoseconds, not at 0, so one evicted from the cache
and started again never repeats a number an old answer was stored under.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from django.core.cache import cache
from django.db import transaction

GENERATION_KEY = "api-generation"
# Cached answers live at most this long, whatever the generation says.
ANSWER_SECONDS = 600


def _bump() -> None:
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:
        cache.set(GENERATION_KEY, time.time_ns(), None)


def generation_bump() -> None:
    """Moves the catalog's generation now and again after the current transaction."""
    _bump()
    transaction.on_commit(_bump)


def _current(found: dict) -> int:
    generation = found.get(GENERATION_KEY)
    if generation is None:
        generation = time.time_ns()
        # A concurrent first reader may win: use whatever was stored.
        if not cache.add(GENERATION_KEY, generation, None):
            generation = cache.get(GENERATION_KEY, generation)
    return generation


class _Answers:
    """Answers this process has read or worked out lately, each with its generation
    and expiry, least recently used out first. Served only under the generation the
    request was given, so they are never staler than the shared cache."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self.items: OrderedDict[str, tuple[int, float, object]] = OrderedDict()

    def get(self, key: str, generation: int) -> object | None:
        entry = self.items.get(key)
        if entry is None or entry[0] != generation or entry[1] <= time.monotonic():
            return None
        self.items.move_to_end(key)
        return entry[2]

    def put(self, key: str, generation: int, seconds: float, value: object) -> None:
        self.items[key] = (generation, time.monotonic() + seconds, value)
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


_answers = _Answers()


def generation_given(request, generation: int | None) -> None:
    """Records the generation read for this request in a round trip it made anyway
    (the rate limit's): cached answers then need no round trip of their own."""
    http_request = getattr(request, "_request", request)
    http_request._catalog_generation = generation


def cached_read(key: str, request) -> tuple[object | None, int]:
    """The answer stored at `key` if it was stored under the current generation (else
    None), and that generation. From this process when the request already knows the
    generation and the answer was seen here under it; else one round trip."""
    generation = getattr(getattr(request, "_request", request), "_catalog_generation", None)
    if generation is not None:
        value = _answers.get(key, generation)
        if value is not None:
            return value, generation
        found = {GENERATION_KEY: generation, **cache.get_many([key])}
    else:
        found = cache.get_many([key, GENERATION_KEY])
        generation = _current(found)
    entry = found.get(key)
    if entry is not None and entry[0] == generation:
        _answers.put(key, generation, ANSWER_SECONDS, entry[1])
        return entry[1], generation
    return None, generation


def cached_write(key: str, value: object, *, generation: int, seconds: int) -> None:
    """Stores an answer worked out after `generation` was read."""
    cache.set(key, (generation, value), seconds)
    _answers.put(key, generation, seconds, value)


# --- Handlers, connected in CatalogConfig.ready() ---------------------------------------


def on_catalog_saved(sender, instance, **kwargs) -> None:
    generation_bump()


def on_event_recorded(sender, instance, created=False, **kwargs) -> None:
    if created:
        generation_bump()
