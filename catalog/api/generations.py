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
cached answer miss once is cheap, and it keeps a cached read to one round trip: the
answer and the generation in one `get_many` (`cached_read`).

A generation starts at the clock in nanoseconds, not at 0, so one evicted from the cache
and started again never repeats a number an old answer was stored under.
"""

from __future__ import annotations

import time

from django.core.cache import cache
from django.db import transaction

_GENERATION = "api-generation"
# Cached answers live at most this long, whatever the generation says.
ANSWER_SECONDS = 600


def _bump() -> None:
    try:
        cache.incr(_GENERATION)
    except ValueError:
        cache.set(_GENERATION, time.time_ns(), None)


def generation_bump() -> None:
    """Moves the catalog's generation now and again after the current transaction."""
    _bump()
    transaction.on_commit(_bump)


def _current(found: dict) -> int:
    generation = found.get(_GENERATION)
    if generation is None:
        generation = time.time_ns()
        # A concurrent first reader may win: use whatever was stored.
        if not cache.add(_GENERATION, generation, None):
            generation = cache.get(_GENERATION, generation)
    return generation


def cached_read(key: str) -> tuple[object | None, int]:
    """The answer stored at `key` if it was stored under the current generation (else
    None), and that generation: one round trip."""
    found = cache.get_many([key, _GENERATION])
    generation = _current(found)
    entry = found.get(key)
    if entry is not None and entry[0] == generation:
        return entry[1], generation
    return None, generation


def cached_write(key: str, value: object, *, generation: int, seconds: int) -> None:
    """Stores an answer worked out after `generation` was read."""
    cache.set(key, (generation, value), seconds)


# --- Handlers, connected in CatalogConfig.ready() ---------------------------------------


def on_catalog_saved(sender, instance, **kwargs) -> None:
    generation_bump()


def on_event_recorded(sender, instance, created=False, **kwargs) -> None:
    if created:
        generation_bump()
