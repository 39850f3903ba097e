"""Writes one line per delivery to a file named in the event; sleeps first when asked,
so a test can kill the worker while the handler runs; names its database session when
asked (PostgreSQL)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def record_delivery(event) -> None:
    log = Path(event.payload["log"])
    with log.open("a") as handle:
        handle.write(f"start {event.pk} {os.getpid()}\n")
    sleep = event.payload.get("sleep_first_time", 0)
    if sleep and log.read_text().count("start") == 1:
        time.sleep(sleep)
    if event.payload.get("database_session"):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_backend_pid(), backend_start FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid()"
            )
            backend, started = cursor.fetchone()
        with log.open("a") as handle:
            handle.write(f"session {backend} {started.isoformat()}\n")
    with log.open("a") as handle:
        handle.write(f"done {event.pk} {os.getpid()}\n")
