"""The catalog's generation: a number in the shared cache that changes whenever anything
the API shows about datasets may have changed, so that answers which change only on
publish can be cached and checked against it.

What moves it is the code that records a change, after the change commits: every
domain event (`catalog.events.event_record`: publish, rollback, deprecation, a new
manifest) and every change of a dataset, organisation or membership (the catalog's
services and the admin) call `generation_bump()`. Not model signals: a
`QuerySet.update()` bypasses them. It moves after commit (and, harmlessly, at once): a
reader reads the generation before the database, so an answer worked out from the old
rows is stored under the old generation, which the bump leaves behind. A change is
therefore seen by the very next call, from any web process.

The cache never fails a commit or a read: the database is the source of truth. A bump
that cannot reach the cache is logged and made up by the outbox sweeper
(`generation_catch_up`, every 30 s: it bumps when the audit log has grown since the
last bump it knows of); a read that cannot reach it answers from the database and
stores nothing.

Cached answers are plain data (bytes, dicts, tuples of them), never ORM objects; model
instances travel as `model_snapshot()` dicts.

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

import logging
import time
from collections import OrderedDict

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

GENERATION_KEY = "api-generation"
# The newest audit entry id whose change the generation has moved for.
SETTLED_KEY = "api-generation-settled"
# Cached answers live at most this long, whatever the generation says.
ANSWER_SECONDS = 600


def _bump() -> None:
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:
        cache.set(GENERATION_KEY, time.time_ns(), None)


class _Breaker:
    """After the cache fails, this process leaves it alone for a few seconds: while it
    is down, a commit or a read does not wait out a connection timeout each time."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self.until = 0.0

    def closed(self) -> bool:
        return time.monotonic() >= self.until

    def trip(self) -> None:
        self.until = time.monotonic() + self.seconds


_breaker = _Breaker()


def cache_usable() -> bool:
    """False for a few seconds after the shared cache failed in this process."""
    return _breaker.closed()


def cache_failed(what: str) -> None:
    """Notes that the shared cache failed (`what` is logged): this process leaves it
    alone for a few seconds."""
    _breaker.trip()
    logger.warning("%s: the shared cache cannot be reached.", what)


def _bump_quietly() -> None:
    if not _breaker.closed():
        return
    try:
        _bump()
    except Exception:
        _breaker.trip()
        logger.warning("Could not move the catalog generation; the outbox sweeper will.")


def generation_bump(*, after_commit: bool = True) -> None:
    """Moves the catalog's generation, now and once the current transaction commits.
    The second move is the one that matters (readers read the generation before the
    database); the first lets code that never commits, such as a test's transaction,
    see its own changes. `after_commit=False` moves it now only, for a caller that
    moves it after commit itself (the event outbox, once per transaction). Never
    raises: a cache that is down is logged and caught up by the outbox sweeper."""
    _bump_quietly()
    if after_commit:
        transaction.on_commit(_bump_quietly)


def generation_catch_up() -> bool:
    """Moves the generation if the audit log grew since the last catch-up, so a bump
    lost to a cache outage is made up within one sweep. Returns whether it moved."""
    from catalog.models import AuditEntry

    newest = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    try:
        settled = cache.get(SETTLED_KEY)
        if settled is not None and settled >= newest:
            return False
        _bump()
        cache.set(SETTLED_KEY, newest, None)
    except Exception:
        logger.warning("The catalog generation could not be caught up.", exc_info=True)
        return False
    return True


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


def cached_read(key: str, request) -> tuple[object | None, int | None]:
    """The answer stored at `key` if it was stored under the current generation (else
    None), and that generation. From this process when the request already knows the
    generation and the answer was seen here under it; else one round trip. When the
    cache cannot be reached: (None, None), and the caller answers from the database."""
    generation = getattr(getattr(request, "_request", request), "_catalog_generation", None)
    if not _breaker.closed():
        return None, None
    try:
        if generation is not None:
            value = _answers.get(key, generation)
            if value is not None:
                return value, generation
            found = {GENERATION_KEY: generation, **cache.get_many([key])}
        else:
            found = cache.get_many([key, GENERATION_KEY])
            generation = _current(found)
    except Exception:
        _breaker.trip()
        logger.warning("The shared cache cannot be read; answering from the database.")
        return None, None
    entry = found.get(key)
    if entry is not None and entry[0] == generation:
        _answers.put(key, generation, ANSWER_SECONDS, entry[1])
        return entry[1], generation
    return None, generation


def cached_write(key: str, value: object, *, generation: int | None, seconds: int) -> None:
    """Stores an answer worked out after `generation` was read (nothing when the
    generation could not be read). A cache error is logged, never raised."""
    if generation is None or not _breaker.closed():
        return
    try:
        cache.set(key, (generation, value), seconds)
    except Exception:
        _breaker.trip()
        logger.warning("The shared cache cannot be written; the answer is not kept.")
        return
    _answers.put(key, generation, seconds, value)


# --- Model instances as plain data -----------------------------------------------------


def model_snapshot(obj, *related: str) -> dict:
    """A model instance as plain data to cache: its fields' values, and those of the
    named related objects (already loaded). Never the pickled instance: that carries
    its caches and the class's layout, which a deploy may change under it."""
    return {
        "model": obj._meta.label,
        "fields": {
            field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields
        },
        "related": {name: model_snapshot(getattr(obj, name)) for name in related},
    }


def model_restore(snapshot: dict):
    """The instance a snapshot was taken of (as loaded from the database), or None when
    it no longer fits its model (a field was removed or renamed since): a cache miss."""
    from django.apps import apps

    try:
        model = apps.get_model(snapshot["model"])
        obj = model(**snapshot["fields"])
    except (LookupError, TypeError, KeyError):
        return None
    obj._state.adding, obj._state.db = False, "default"
    for name, related in snapshot["related"].items():
        restored = model_restore(related)
        if restored is None:
            return None
        setattr(obj, name, restored)
    return obj
