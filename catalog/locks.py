"""A lock per dataset, held across processes and machines while a version is decided
and committed, so that two publishes of one dataset happen one after the other.

PostgreSQL: a session advisory lock. SQLite (the embedded mode, one machine): a file lock.

`dataset_lock(id, wait=False)` only takes the lock if it is free at once, and says
whether it did: a web request that would publish a small file itself (rather than
queue it) never waits behind another publish of the dataset.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

_NAMESPACE = 0x44_53  # "DS": keeps these locks apart from any other advisory lock user


@contextmanager
def dataset_lock(dataset_id: int, *, wait: bool = True) -> Iterator[bool]:
    """Holds the dataset's lock for the block and yields True; with `wait=False`, yields
    False at once (holding nothing) when another session holds it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_NAMESPACE, dataset_id])
            else:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_NAMESPACE, dataset_id])
                if not cursor.fetchone()[0]:
                    yield False
                    return
        try:
            yield True
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_NAMESPACE, dataset_id])
        return
    folder = settings.VAR_DIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"dataset-{dataset_id}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
