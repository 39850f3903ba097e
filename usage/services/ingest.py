"""Moving buffered events into the raw log: batches, COPY, idempotent by event id.

`events_ingest()` (the `usage.ingest` task, every few seconds) takes this host's spool
files and then Redis's list, `USAGE_INGEST_BATCH` events at a time, and writes each
batch in one transaction. In PostgreSQL, with no Python work per event:

1. the batch's lines (`usage.services.lines`) go to a temporary table with one COPY;
   if a malformed line makes COPY fail, the batch is parsed in Python and the bad
   line set aside;
2. each distinct user agent of the batch is classified once (ua-parser's family; a
   robot by the COUNTER robots list, a script by COUNTER's machine list, else a
   person) into a second temporary table;
3. any monthly partition the batch needs is made on the spot;
4. one `INSERT ... SELECT` joins the two (and a served object's key to its version and
   dataset) into the log; should the batch hold an event already there (a worker
   killed after its commit, a spool replayed twice), it is written again with
   `ON CONFLICT DO NOTHING`, so every event is written once;
5. each day the batch touched is marked for its rollups.

Elsewhere (SQLite) the lines are parsed in Python and inserted with `INSERT OR IGNORE`.

Only after the commit is the batch removed from Redis (LTRIM, under the ingest lock,
checked to be still ours). A worker killed before the commit leaves the batch where it
was; one killed after it leaves a batch that the next run writes as nothing new.
"""

from __future__ import annotations

import fcntl
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import counter_robots
import psycopg
import redis
import ua_parser
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from usage import partitions
from usage.models import AccessMethod, RollupDue
from usage.services import buffer
from usage.services import lines as line_format
from versioning.models import DatasetVersion

logger = logging.getLogger(__name__)

COLUMNS = (
    "event_id",
    "occurred_at",
    "organization_id",
    "dataset_id",
    "version_id",
    "user_id",
    "token_id",
    "kind",
    "status",
    "response_ms",
    "bytes",
    "country",
    "agent_family",
    "access_method",
    "client",
    "request_id",
)
STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS usage_stage (
    event_id uuid, occurred_at timestamptz, organization_id bigint, dataset_id bigint,
    version_id bigint, user_id integer, token_id bigint, kind text, status smallint,
    response_ms integer, bytes bigint, country text, client text, request_id text,
    object_key text, user_agent text
) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS usage_stage_agents (
    user_agent text PRIMARY KEY, agent_family text, access_method text
) ON COMMIT DELETE ROWS;
TRUNCATE usage_stage, usage_stage_agents;
"""
MOVE = f"""
INSERT INTO usage_event ({", ".join(COLUMNS)})
SELECT s.event_id, s.occurred_at, coalesce(d.organization_id, s.organization_id),
    coalesce(v.dataset_id, s.dataset_id), coalesce(v.id, s.version_id), s.user_id,
    s.token_id, s.kind, s.status, s.response_ms, s.bytes, s.country,
    coalesce(a.agent_family, 'Other'), coalesce(a.access_method, 'regular'), s.client,
    s.request_id
FROM usage_stage s
LEFT JOIN usage_stage_agents a ON a.user_agent = s.user_agent
LEFT JOIN versioning_datasetversion v ON s.object_key <> '' AND v.key = s.object_key
LEFT JOIN catalog_dataset d ON d.id = v.dataset_id
"""


@dataclass(frozen=True)
class IngestResult:
    read: int = 0
    written: int = 0

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(self.read + other.read, self.written + other.written)


@lru_cache(maxsize=4096)
def agent_classify(user_agent: str) -> tuple[str, str]:
    """(family, access method) of a user agent, by ua-parser and the COUNTER lists."""
    if counter_robots.is_machine(user_agent):
        method = AccessMethod.MACHINE
    elif counter_robots.is_robot(user_agent):
        method = AccessMethod.ROBOT
    else:
        method = AccessMethod.REGULAR
    family = ua_parser.parse_user_agent(user_agent) if user_agent else None
    return ((family.family if family else "Other")[:64], str(method))


def events_write(*, records: list[dict]) -> int:
    """Writes events given as the middleware builds them; returns how many were new."""
    encoded = []
    for record in records:
        try:
            encoded.append(line_format.encode(record))
        except ValueError as exc:
            logger.warning("A malformed usage event was left out (%s): %.200r", exc, record)
    return lines_write(lines=encoded)


def lines_write(*, lines: Sequence[str | bytes]) -> int:
    """Writes a batch of buffered lines; returns how many events were new. Idempotent."""
    if not lines:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            return _write_postgresql(lines)
        return _write_python(lines)


def _decoded(batch: Sequence[str | bytes]) -> list[dict]:
    rows = []
    for line in batch:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        try:
            rows.append(line_format.decode(text))
        except ValueError as exc:
            logger.warning("A malformed usage line was left out (%s): %.200r", exc, text)
    return rows


def _as_bytes(line: str | bytes) -> bytes:
    return line if isinstance(line, bytes) else line.encode()


def _write_postgresql(batch: Sequence[str | bytes]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(STAGE)
        try:
            with transaction.atomic(), cursor.copy("COPY usage_stage FROM STDIN") as copy:
                # One block of bytes: a write per line costs more than the COPY.
                copy.write(b"".join(_as_bytes(line) + b"\n" for line in batch))
        except (psycopg.DataError, DataError):
            # One bad line fails the COPY: find it in Python and copy the others.
            with cursor.copy(
                f"COPY usage_stage ({', '.join(line_format.FIELDS)}) FROM STDIN"
            ) as copy:
                for row in _decoded(batch):
                    copy.write_row([row[name] for name in line_format.FIELDS])
        cursor.execute("SELECT DISTINCT user_agent FROM usage_stage")
        agents = [row[0] for row in cursor.fetchall()]
        with cursor.copy("COPY usage_stage_agents FROM STDIN") as copy:
            for agent in agents:
                copy.write_row((agent, *agent_classify(agent or "")))
        cursor.execute("SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date FROM usage_stage")
        days = [row[0] for row in cursor.fetchall()]
        existing = partitions.partitions_existing()
        for month in {partitions.month_start(day) for day in days}:
            if partitions.partition_name(month) not in existing:
                partitions.partition_ensure(month=month, cursor=cursor)
                logger.info("Made the missing partition %s.", partitions.partition_name(month))
        try:
            # Almost every batch is new: a plain insert is twice as fast as one that
            # checks each row for a conflict...
            with transaction.atomic():
                cursor.execute(MOVE)
        except IntegrityError:
            # ...and a batch seen before (a worker killed after its commit, a spool
            # replayed twice) is written again skipping what is there.
            cursor.execute(MOVE + " ON CONFLICT DO NOTHING")
        written = cursor.rowcount
    days_mark_due(days=days)
    return written


def _write_python(batch: Sequence[str | bytes]) -> int:
    rows = _decoded(batch)
    keys = {row["object_key"] for row in rows if row["object_key"]}
    objects = {
        v["key"]: v
        for v in DatasetVersion.objects.filter(key__in=keys).values(
            "key", "pk", "dataset_id", "dataset__organization_id"
        )
    }
    adapt = connection.ops.adapt_datetimefield_value
    prepared = []
    for row in rows:
        found = objects.get(row["object_key"])
        if found is not None:
            row["version_id"], row["dataset_id"] = found["pk"], found["dataset_id"]
            row["organization_id"] = found["dataset__organization_id"]
        row["agent_family"], row["access_method"] = agent_classify(row["user_agent"])
        values = [row[name] for name in COLUMNS]
        values[0], values[1] = row["event_id"].hex, adapt(row["occurred_at"])
        prepared.append(values)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    with connection.cursor() as cursor:
        before = _count(cursor)
        cursor.executemany(
            f"INSERT OR IGNORE INTO usage_event ({', '.join(COLUMNS)}) VALUES ({placeholders})",
            prepared,
        )
        written = _count(cursor) - before
    days_mark_due(days={row["occurred_at"].date() for row in rows})
    return written


def _count(cursor) -> int:
    cursor.execute("SELECT count(*) FROM usage_event")
    return cursor.fetchone()[0]


def days_mark_due(*, days: Iterable[date]) -> None:
    now = timezone.now()
    for day in sorted(set(days)):
        RollupDue.objects.update_or_create(day=day, defaults={"marked_at": now})


# --- Draining the buffers -------------------------------------------------------------


def events_ingest(*, batch: int | None = None, max_batches: int = 50) -> IngestResult:
    """Moves what waits in this process, this host's spool and Redis into the raw log."""
    buffer.records_flush()
    batch = batch or settings.USAGE_INGEST_BATCH
    result = spool_ingest(batch=batch)
    return result + redis_ingest(batch=batch, max_batches=max_batches)


@contextmanager
def _host_lock():
    folder = Path(settings.USAGE_SPOOL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ingest.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def spool_ingest(*, batch: int) -> IngestResult:
    """Writes this host's spool files into the raw log (one ingester per host)."""
    result = IngestResult()
    with _host_lock() as mine:
        if not mine:
            return result
        for chunk in buffer.spool_drain(batch=batch):
            result += IngestResult(len(chunk), lines_write(lines=chunk))
    return result


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    if tonumber(ARGV[2]) > 0 then redis.call('ltrim', KEYS[2], ARGV[2], -1) end
    return 1
end
return 0
"""


def redis_ingest(*, batch: int, max_batches: int) -> IngestResult:
    """Writes Redis's buffered events into the raw log, batch by batch, under a lease.

    A Redis outage ends the run quietly: the events wait in Redis (or the spool).
    """
    client = buffer.redis_client(patient=True)
    if client is None:
        return IngestResult()
    result = IngestResult()
    token = uuid.uuid4().hex
    lease_ms = settings.USAGE_INGEST_LEASE_SECONDS * 1000
    try:
        for _ in range(max_batches):
            # Another ingester holds the lease (or we lost ours): leave it the work.
            if (
                not client.set(buffer.lock_key(), token, nx=True, px=lease_ms)
                and client.get(buffer.lock_key()) != token.encode()
            ):
                break
            chunk = client.lrange(buffer.buffer_key(), 0, batch - 1)
            if not chunk:
                break
            begun = time.monotonic()
            result += IngestResult(len(chunk), lines_write(lines=chunk))
            # Remove the batch only if the lease is still ours; else the next holder
            # reads it again and writes nothing new.
            if not client.eval(
                _RELEASE, 2, buffer.lock_key(), buffer.buffer_key(), token, len(chunk)
            ):
                logger.warning(
                    "The usage ingest lease ran out during a batch of %s events (%.1f s); "
                    "the batch stays for the next run.",
                    len(chunk),
                    time.monotonic() - begun,
                )
                break
            client.pexpire(buffer.lock_key(), lease_ms)
            if len(chunk) < batch:
                break
    except redis.RedisError as exc:
        logger.warning("Redis is unreachable (%s): usage ingest waits for it.", exc)
        return result
    finally:
        with suppress(redis.RedisError):
            client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('del', KEYS[1]) end return 0",
                1,
                buffer.lock_key(),
                token,
            )
    return result


def buffered_count() -> int | None:
    """Events waiting in Redis; None when it cannot be asked."""
    client = buffer.redis_client()
    if client is None:
        return None
    try:
        return int(client.llen(buffer.buffer_key()))
    except redis.RedisError:
        return None
