"""Moving buffered events into the raw log: batches, COPY, idempotent by event id.

`events_ingest()` (the `usage.ingest` task, every few seconds) takes this host's spool
files and then Redis's list, `USAGE_INGEST_BATCH` events at a time, and writes each
batch in one transaction:

1. the user agent becomes a family (ua-parser) and an access method: a robot by the
   COUNTER robots list, a machine (a script) by COUNTER's machine list, else regular;
   a served object's key becomes its dataset and version;
2. PostgreSQL: COPY into a temporary table, make any monthly partition the batch needs,
   then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`, so an event seen twice (a
   worker killed after its commit, a spool replayed twice) is written once. SQLite:
   `INSERT OR IGNORE`, same effect;
3. each day the batch touched is marked for its rollups.

Only after the commit is the batch removed from Redis (LTRIM, under the ingest lock,
checked to be still ours). A worker killed before the commit leaves the batch where it
was; one killed after it leaves a batch that the next run writes as nothing new.
"""

from __future__ import annotations

import fcntl
import json
import logging
import uuid
from collections.abc import Iterable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

import counter_robots
import redis
import ua_parser
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from usage import partitions
from usage.models import AccessMethod, RollupDue
from usage.services import buffer
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


def _occurred_at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _rows(records: list[dict]) -> list[tuple]:
    """The batch as table rows; a malformed record is logged and left out."""
    keys = {r["object_key"] for r in records if r.get("object_key")}
    objects = {}
    if keys:
        objects = {
            v["key"]: v
            for v in DatasetVersion.objects.filter(key__in=keys).values(
                "key", "pk", "dataset_id", "dataset__organization_id"
            )
        }
    rows = []
    for record in records:
        try:
            family, method = agent_classify(str(record.get("ua", ""))[:512])
            dataset_id, version_id = record.get("dataset"), record.get("version")
            organization_id = record.get("organization")
            found = objects.get(record.get("object_key") or "")
            if found is not None:
                dataset_id, version_id = found["dataset_id"], found["pk"]
                organization_id = found["dataset__organization_id"]
            rows.append(
                (
                    uuid.UUID(record["id"]),
                    _occurred_at(float(record["t"])),
                    organization_id,
                    dataset_id,
                    version_id,
                    record.get("user"),
                    record.get("token"),
                    str(record["kind"])[:16],
                    int(record["status"]),
                    max(0, int(record.get("ms", 0))),
                    max(0, int(record.get("bytes", 0))),
                    str(record.get("country") or "")[:2],
                    family,
                    method,
                    str(record.get("client", ""))[:32],
                    str(record.get("rid", ""))[:64],
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("A malformed usage event was left out (%s): %.200r", exc, record)
    return rows


def events_write(*, records: list[dict]) -> int:
    """Writes a batch of buffered events; returns how many were new. Idempotent."""
    rows = _rows(records)
    if not rows:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            written = _write_postgresql(rows)
        else:
            written = _write_sqlite(rows)
        days_mark_due(days={row[1].date() for row in rows})
    return written


def _write_postgresql(rows: list[tuple]) -> int:
    columns = ", ".join(COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS usage_event_stage "
            "(LIKE usage_event INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY usage_event_stage ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        existing = partitions.partitions_existing()
        for month in {partitions.month_start(row[1].date()) for row in rows}:
            if partitions.partition_name(month) not in existing:
                partitions.partition_ensure(month=month, cursor=cursor)
                logger.info("Made the missing partition %s.", partitions.partition_name(month))
        cursor.execute(
            f"INSERT INTO usage_event ({columns}) SELECT {columns} FROM usage_event_stage "
            "ON CONFLICT DO NOTHING"
        )
        return cursor.rowcount


def _write_sqlite(rows: list[tuple]) -> int:
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    adapt = connection.ops.adapt_datetimefield_value
    prepared = [(row[0].hex, adapt(row[1]), *row[2:]) for row in rows]
    with connection.cursor() as cursor:
        before = _count(cursor)
        cursor.executemany(
            f"INSERT OR IGNORE INTO usage_event ({', '.join(COLUMNS)}) VALUES ({placeholders})",
            prepared,
        )
        return _count(cursor) - before


def _count(cursor) -> int:
    cursor.execute("SELECT count(*) FROM usage_event")
    return cursor.fetchone()[0]


def days_mark_due(*, days: Iterable[date]) -> None:
    now = timezone.now()
    for day in sorted(set(days)):
        RollupDue.objects.update_or_create(day=day, defaults={"marked_at": now})


# --- Draining the buffers -------------------------------------------------------------


def events_ingest(*, batch: int | None = None, max_batches: int = 50) -> IngestResult:
    """Moves what waits in this host's spool and in Redis into the raw log."""
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
        for lines in buffer.spool_drain(batch=batch):
            records = _parsed(lines)
            result += IngestResult(len(records), events_write(records=records))
    return result


def _parsed(lines: list[str | bytes]) -> list[dict]:
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            logger.warning("An unreadable usage event was left out: %.200r", line)
    return records


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
    client = buffer.redis_client()
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
            lines = client.lrange(buffer.buffer_key(), 0, batch - 1)
            if not lines:
                break
            records = _parsed(lines)
            written = events_write(records=records)
            result += IngestResult(len(records), written)
            # Remove the batch only if the lease is still ours; else the next holder
            # reads it again and writes nothing new.
            if not client.eval(
                _RELEASE, 2, buffer.lock_key(), buffer.buffer_key(), token, len(lines)
            ):
                logger.warning("The usage ingest lease ran out mid-batch; the batch stays.")
                break
            client.pexpire(buffer.lock_key(), lease_ms)
            if len(lines) < batch:
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
