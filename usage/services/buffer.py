"""Where a request leaves its usage event: a Redis list, or a local spool file.

A request must never wait for the database to record its usage, nor fail because
recording failed. Its line (`usage.services.lines`) goes to a Redis list (in a batch,
below, after the answer has gone), and the ingest task moves the list into the database
in batches. Without Redis (the embedded mode), or while Redis
is down, the line goes to a spool file under `USAGE_SPOOL_DIR` instead: an append to a
local file never blocks on the network. A spool is replayed by the ingest task on its
host and, on a web host, into Redis as soon as Redis answers again.

A web process sends its events to Redis in batches: a request only adds its line to the
process's batch (about a microsecond), and a thread of the process pushes the batch in one
round trip at most `BATCH_SECONDS` after its first event (sooner once `BATCH_EVENTS`
wait). One push per request cost the API about a tenth of a millisecond of a worker's
time per request, more than the whole answer of a cached read; in batches it is a few
microseconds. The batch is pushed on the process's normal exit (`atexit`, after waiting
for a push under way), and the ingest pushes its own process's batch before it reads:
only a killed process loses the events of its last fraction of a second. Without Redis a
line goes straight to the spool, as before: a local append costs as little.

After a Redis failure the recorder does not try Redis again for a few seconds, so an
outage costs the requests one failed connection attempt, not one per request.

Spool files are written by many processes and claimed by a replayer by renaming them.
A writer takes an exclusive `flock` and checks that the path still names the file it
opened before it appends; the replayer takes the same lock on the claimed file before
reading it, so no line is written into a file after it was read.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from django.conf import settings

from usage.services import lines

logger = logging.getLogger(__name__)

RETRY_REDIS_AFTER_SECONDS = 5.0
# The longest an event waits in its process before it is pushed to Redis, and the batch
# size that pushes it sooner.
BATCH_SECONDS = 0.2
BATCH_EVENTS = 200
# How often a web process looks for spool files to replay once Redis is back.
REPLAY_CHECK_SECONDS = 10.0

_clients: dict[tuple[str, bool], redis.Redis] = {}
_state = threading.local()
_redis_down_until = 0.0
_next_replay_check = 0.0
_replay_lock = threading.Lock()


def buffer_key() -> str:
    return settings.USAGE_BUFFER_KEY


def lock_key() -> str:
    return f"{settings.USAGE_BUFFER_KEY}:ingest-lock"


def redis_client(*, patient: bool = False) -> redis.Redis | None:
    """One client (and connection pool) per URL; None when no Redis is configured.

    Requests use short timeouts (a slow Redis must not slow them); the ingest, which
    moves 20,000 events per call, is `patient`."""
    url = settings.USAGE_REDIS_URL
    if not url:
        return None
    client = _clients.get((url, patient))
    if client is None:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=2 if patient else 0.25, socket_timeout=30 if patient else 1
        )
        _clients[(url, patient)] = client
    return client


def record_append(record: dict) -> None:
    """Adds one event to this process's batch for Redis, or without Redis appends it to
    the spool; never raises (a lost spool write is logged, never a 500)."""
    try:
        line = lines.encode(record)
    except ValueError:
        logger.exception("A usage event could not be encoded; it is left out.")
        return
    if settings.USAGE_REDIS_URL:
        try:
            _batch.add(line)
            return
        except RuntimeError:
            pass  # no thread can start (the interpreter is exiting): appended now instead
    _lines_append([line])


def records_flush() -> None:
    """Pushes the events waiting in this process now (to Redis, or the spool)."""
    _batch.flush()


def _lines_append(batch: list[str]) -> None:
    try:
        if not _redis_append(batch):
            spool_append(batch)
    except Exception:
        logger.exception("Could not record %d usage events; they are lost.", len(batch))


def _redis_append(batch: list[str]) -> bool:
    global _redis_down_until
    client = redis_client()
    if client is None or time.monotonic() < _redis_down_until:
        return False
    try:
        client.rpush(buffer_key(), *batch)
    except redis.RedisError as exc:
        _redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
        logger.warning("Redis is unreachable (%s): usage events go to the spool.", exc)
        return False
    _maybe_replay_spool(client)
    return True


class _Batch:
    """The events of this process not yet pushed, and the thread that pushes them."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        # A forked child starts empty: its parent pushes what it had.
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.pushing = threading.Lock()  # one push at a time; the exit waits for it
        self.waiting = threading.Event()
        self.full = threading.Event()
        self.started = False  # this process's pushing thread

    def add(self, line: str) -> None:
        with self.lock:
            if not self.started:
                threading.Thread(target=self._run, name="usage-batch", daemon=True).start()
                self.started = True
            self.lines.append(line)
            count = len(self.lines)
        # The thread is woken by a batch's first event (it clears `waiting` before it
        # takes the batch, so no first event is missed), and again when it is full.
        if count == 1:
            self.waiting.set()
        if count >= BATCH_EVENTS:
            self.full.set()

    def flush(self) -> None:
        with self.pushing:
            with self.lock:
                batch, self.lines = self.lines, []
            if batch:
                _lines_append(batch)

    def _run(self) -> None:
        while True:
            self.waiting.wait()
            self.full.wait(BATCH_SECONDS)
            self.waiting.clear()
            self.full.clear()
            self.flush()


_batch = _Batch()


def _maybe_replay_spool(client: redis.Redis) -> None:
    """Moves this host's spool into Redis now that it answers, at most every few seconds."""
    global _next_replay_check
    now = time.monotonic()
    if now < _next_replay_check or not _replay_lock.acquire(blocking=False):
        return
    try:
        _next_replay_check = now + REPLAY_CHECK_SECONDS
        for lines in spool_drain(batch=5000):
            client.rpush(buffer_key(), *lines)
    except redis.RedisError:
        logger.warning("Redis failed while the usage spool was replayed; it stays spooled.")
    finally:
        _replay_lock.release()


def redis_reset() -> None:
    """Forgets a past Redis failure (and the cached clients): the next append tries it."""
    global _redis_down_until, _next_replay_check
    _redis_down_until = 0.0
    _next_replay_check = 0.0
    for client in _clients.values():
        client.close()
    _clients.clear()


# --- The spool ------------------------------------------------------------------------


def _spool_dir() -> Path:
    folder = Path(settings.USAGE_SPOOL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _spool_path() -> Path:
    return _spool_dir() / f"events-{socket.gethostname()}-{os.getpid()}.tsv"


def spool_append(lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    path = _spool_path()
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.write(fd, data)
                return
        finally:
            os.close(fd)  # closing releases the lock
        # A replayer claimed the file between our open and our lock: open the new one.


def spool_files() -> list[Path]:
    folder = Path(settings.USAGE_SPOOL_DIR)
    if not folder.exists():
        return []
    return sorted(folder.glob("events-*.tsv")) + sorted(folder.glob("claimed-*.tsv"))


def spool_drain(*, batch: int) -> Iterator[list[str]]:
    """Yields the spooled lines in batches, deleting each file once all its lines were
    taken by the caller (a crash half-way leaves the claimed file to be read again:
    the ingest is idempotent by event id)."""
    for path in spool_files():
        if path.name.startswith("events-"):
            claimed = path.with_name(f"claimed-{uuid.uuid4().hex}.tsv")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another replayer took it
            path = claimed
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            continue
        with handle:
            # Waits for a writer that opened the file before it was renamed.
            fcntl.flock(handle, fcntl.LOCK_EX)
            lines: list[str] = []
            for raw in handle:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    lines.append(text)
                if len(lines) >= batch:
                    yield lines
                    lines = []
            if lines:
                yield lines
        path.unlink(missing_ok=True)


def spool_size() -> int:
    """How many bytes wait in this host's spool (for the admin home)."""
    return sum(p.stat().st_size for p in spool_files() if p.exists())
