"""Keeping a claimed row's lease alive while long work runs.

Work on a claimed row (a publish job, an event delivery) holds a lease: a time after
which other workers take the row as abandoned. Work that can outlast the lease (a large
copy, waiting for a lock, converting a file) renews it from a thread, every third of the
lease, through a renewal that is fenced by the claim (it updates the row only while the
claim is still this worker's). The thread survives database errors (a dropped
connection is closed and the next beat opens a new one), and stops for good once the
claim is lost, which the work checks before it commits (`check()`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The claim on a row is gone: another worker holds it now."""


class LeaseKeeper:
    """`with LeaseKeeper(renew, every=...)`: calls `renew()` every `every` seconds
    until the block ends. `renew()` returns False when the claim is lost."""

    def __init__(self, renew: Callable[[], bool], *, every: float, name: str) -> None:
        self.renew = renew
        self.every = max(0.5, every)
        self.name = name
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True, name=f"lease {name}")

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def check(self) -> None:
        """Raises LeaseLost if the claim was lost while the work ran."""
        if self.lost.is_set():
            raise LeaseLost(f"{self.name} lost its claim.")

    def _keep(self) -> None:
        try:
            while not self.stop.wait(self.every):
                try:
                    if not self.renew():
                        self.lost.set()
                        return
                except DatabaseError:
                    logger.warning("Could not extend the lease of %s; trying again", self.name)
                    connection.close()  # this thread's own, broken connection
        finally:
            connection.close()  # this thread's own connection
