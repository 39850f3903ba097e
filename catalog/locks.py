"""A lock per dataset, held across processes and machines while a version is decided
and committed, so that two publishes of one dataset happen one after the other.

PostgreSQL: a session advisory lock. SQLite (the embedded mode, one machine): a file lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

_NAMESPACE = 0x44_53  # "DS": keeps these locks apart from any other advisory lock user


@contextmanager
def dataset_lock(dataset_id: int) -> Iterator[None]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_NAMESPACE, dataset_id])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_NAMESPACE, dataset_id])
        return
    folder = settings.VAR_DIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"dataset-{dataset_id}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
