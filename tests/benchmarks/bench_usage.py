"""Benchmark of usage analytics against baselines measured in the same run.

    python tests/benchmarks/bench_usage.py [--seconds 8] [--clients 4]
        [--events 1000000] [--dashboard-events 10000000]

On a database of its own (PostgreSQL from DATABASE_URL, Redis from REDIS_URL, moto's S3
server on a free loopback port):

1. **Recording cost**: GET .../download/ (a signed URL) served by gunicorn with usage
   recording on, against the same app with it off, in alternating rounds; goal >= 0.9x.
2. **Recording path**: `--events` events appended to the Redis buffer as requests do and
   ingested into the partitioned log (COPY, idempotent insert, rollup marks), against a
   raw COPY of the same rows into a table like it; goal >= 0.5x.
3. **Dashboard**: the dataset health dashboard's figures from the rollups over
   `--dashboard-events` events (written with generate_series, then rolled up by the
   product), against the same figures aggregated from the raw log; goals >= 20x and
   under 300 ms.

Prints each measurement, then the ratios, last. Exits 0 when the run completed (the
ratios are reported against their goals, not enforced).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.api_load import load  # noqa: E402
from tests.benchmarks.bench_api import (  # noqa: E402
    gunicorn,
    postgres_database,
    s3_server,
    say,
    service_env,
)
from tests.benchmarks.measure import Goal, Series, ratio_line, ratios  # noqa: E402

GOALS = {"recording": 0.9, "ingest": 0.5, "dashboard": 20.0}
DASHBOARD_MS_GOAL = 300
DATASETS = 60
DAYS = 30
CHUNK = 100_000
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


def prepare() -> dict:
    """An organisation, a steward with a token, 60 datasets, one published."""
    import io

    from django.contrib.auth import get_user_model

    from catalog.audit import Actor
    from catalog.models import Role
    from catalog.services import dataset_create, membership_set, organization_create
    from catalog.tokens import token_create
    from versioning.models import JobSource
    from versioning.services import publish_job_create, publish_job_run

    system = Actor.system(via="command")
    org = organization_create(slug="scout", name="Scout", actor=system)
    user = get_user_model().objects.create_user(username="bench", password=secrets.token_hex())
    membership_set(organization=org, user=user, role=Role.STEWARD, actor=system)
    _, token = token_create(user=user, name="bench", scopes=["read"], actor=system)
    datasets = [
        dataset_create(
            organization=org,
            layer="gold",
            name=f"dataset_{i:02d}",
            actor=system,
            freshness_hours=24 if i % 5 == 0 else None,
        )
        for i in range(DATASETS)
    ]
    small = b"date_key,store_id,revenue\n" + b"".join(
        f"2024-08-{1 + i % 28:02d},ST{i:04d},{i * 1.5}\n".encode() for i in range(500)
    )
    job = publish_job_create(
        dataset=datasets[0],
        stream=io.BytesIO(small),
        filename="d.csv",
        actor=system,
        source=JobSource.COMMAND,
    )
    job = publish_job_run(job_id=job.pk)
    assert job.status == "succeeded", job.message
    return {"token": token, "user": user, "datasets": datasets, "version": job.version}


# --- 1. Recording on vs off -----------------------------------------------------------------


def bench_recording(
    env: dict, var: Path, token: str, seconds: float, clients: int, rounds: int
) -> float:
    """Requests per second with recording on over off: the median of the rounds' ratios."""
    auth = {"Authorization": f"Bearer {token}", "User-Agent": BROWSER}
    rates = {"off": Series(), "on": Series()}
    servers = {
        "off": {**env, "USAGE_RECORDING": "false"},
        "on": {**env, "USAGE_RECORDING": "true"},
    }
    for round_ in range(rounds):
        for name, server_env in servers.items():
            with gunicorn(server_env, var / f"gunicorn-{name}.log") as base:
                url = f"{base}/api/v1/datasets/gold/dataset_00/download/"
                load(url, headers=auth, seconds=1, clients=clients)  # warm up
                result = load(url, headers=auth, seconds=seconds, clients=clients)
                assert set(result["statuses"]) == {200}, result["statuses"]
                rates[name].add(result["rps"])
            say(
                f"  round {round_ + 1}, recording {name:<3} {result['rps']:8.0f} req/s"
                f"   p99 {result['p99_ms']:6.1f} ms"
            )
            problems = (var / f"gunicorn-{name}.log").read_text()
            if "Traceback" in problems or "usage event" in problems:
                say(problems[-2000:])
    say(
        ratio_line(
            "  recording on / off, req/s",
            rates["on"],
            rates["off"],
            goal=Goal.at_least(GOALS["recording"]),
        )
    )
    return ratios(rates["on"], rates["off"]).median


# --- 2. The recording path vs raw COPY --------------------------------------------------------


def _record(i: int, prepared: dict, base: float) -> dict:
    dataset = prepared["datasets"][i % DATASETS]
    return {
        "id": uuid.UUID(int=i + 1).hex,
        "t": base + i * 0.01,
        "organization": dataset.organization_id,
        "dataset": dataset.pk,
        "version": None,
        "user": prepared["user"].pk if i % 3 else None,
        "token": None,
        "kind": "download" if i % 4 else "detail",
        "status": 200 if i % 50 else 404,
        "ms": 5 + i % 40,
        "bytes": 600,
        "country": "PH",
        "ua": BROWSER,
        "client": f"c{i % 5000}",
        "rid": uuid.UUID(int=i + 1).hex,
    }


def bench_ingest(prepared: dict, events: int) -> float:
    """The ingest (buffer to log) against a raw COPY of the same rows. The appends are
    timed apart: requests make them, one each, in many web processes at once (their
    cost is part 1); the ingest is the one step every event goes through in line."""
    from django.db import connection

    from usage import partitions
    from usage.services import buffer
    from usage.services import lines as line_format
    from usage.services.ingest import COLUMNS, agent_classify, events_ingest

    client = buffer.redis_client(patient=True)
    client.delete(buffer.buffer_key(), buffer.lock_key())
    base = time.time() - 3600
    appended = ingested = 0.0
    written = 0
    for first in range(0, events, CHUNK):
        begun = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(events, first + CHUNK)):
            pipe.rpush(buffer.buffer_key(), line_format.encode(_record(i, prepared, base)))
        pipe.execute()
        appended += time.perf_counter() - begun
        begun = time.perf_counter()
        while client.llen(buffer.buffer_key()):
            written += events_ingest(max_batches=1000).written
        ingested += time.perf_counter() - begun
    assert written == events, (written, events)
    say(f"  appends          {events:,} events in {appended:6.1f} s ({events / appended:,.0f}/s)")
    say(f"  ingest           {events:,} events in {ingested:6.1f} s ({events / ingested:,.0f}/s)")

    # The baseline table is the log's twin: partitioned by month, the same keys and
    # indexes; COPY straight into it is the most the database takes for these rows.
    this_month = date.today().replace(day=1)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_copy")
        cursor.execute(
            "CREATE TABLE bench_raw_copy (LIKE usage_event INCLUDING DEFAULTS, "
            "PRIMARY KEY (occurred_at, event_id)) PARTITION BY RANGE (occurred_at)"
        )
        cursor.execute("CREATE INDEX ON bench_raw_copy USING brin (occurred_at)")
        cursor.execute("CREATE INDEX ON bench_raw_copy (dataset_id, occurred_at)")
        for offset in (-1, 0, 1):
            start = partitions.month_add(this_month, offset)
            cursor.execute(
                f"CREATE TABLE bench_raw_copy_{offset + 1} PARTITION OF bench_raw_copy "
                f"FOR VALUES FROM ('{start}') TO ('{partitions.month_add(start, 1)}')"
            )
    copied = 0.0
    for first in range(0, events, CHUNK):
        # The same rows, decoded and classified outside the clock; only COPY is timed.
        rows = []
        for i in range(first, min(events, first + CHUNK)):
            row = line_format.decode(line_format.encode(_record(i, prepared, base)))
            row["agent_family"], row["access_method"] = agent_classify(row["user_agent"])
            rows.append([row[name] for name in COLUMNS])
        begun = time.perf_counter()
        sql = f"COPY bench_raw_copy ({', '.join(COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
        copied += time.perf_counter() - begun
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_raw_copy")
    say(f"  raw COPY         {events:,} rows   in {copied:6.1f} s ({events / copied:,.0f}/s)")
    return copied / ingested


# --- 3. The health dashboard: rollups vs the raw log ----------------------------------------

RAW_HEALTH = """
WITH recent AS (
    SELECT dataset_id, occurred_at, kind, status, access_method, response_ms
    FROM usage_event
    WHERE occurred_at >= %(start30)s AND occurred_at < %(end)s AND dataset_id = ANY(%(ids)s)
), daily AS (
    SELECT dataset_id, (occurred_at AT TIME ZONE 'UTC')::date AS day,
        count(*) FILTER (WHERE kind IN ('download', 'raw', 'export')
            AND status IN (200, 304) AND access_method <> 'robot') AS downloads,
        count(*) FILTER (WHERE kind <> 'object') AS api_calls,
        count(*) FILTER (WHERE status >= 400) AS errors,
        percentile_disc(0.95) WITHIN GROUP (ORDER BY response_ms) AS p95
    FROM recent GROUP BY 1, 2
)
SELECT dataset_id,
    sum(downloads) FILTER (WHERE day >= %(start7)s) AS downloads_7d,
    sum(downloads) AS downloads_30d,
    sum(api_calls) AS api_calls_30d,
    sum(errors) AS errors_30d,
    max(p95) FILTER (WHERE day >= %(start7)s) AS p95_ms_7d
FROM daily GROUP BY dataset_id
"""


def _timed(function, runs: int) -> tuple[float, object]:
    function()  # warm: plans, caches
    times, result = [], None
    for _ in range(runs):
        begun = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - begun)
    return statistics.median(times), result


def bench_dashboard(prepared: dict, events: int) -> tuple[float, float]:
    from django.db import connection

    from usage import partitions, selectors
    from usage.models import UsageEvent
    from usage.services.ingest import days_mark_due
    from usage.services.rollups import rollups_run_due

    today = selectors.today()
    first_day = today - timedelta(days=DAYS - 1)
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    span = DAYS * 86400 - 1
    ids = [d.pk for d in prepared["datasets"]]
    UsageEvent.objects.all().delete()
    month = partitions.month_start(first_day)
    while month <= today:
        partitions.partition_ensure(month=month)
        month = partitions.month_add(month, 1)
    begun = time.perf_counter()
    with connection.cursor() as cursor:
        for first in range(0, events, 1_000_000):
            cursor.execute(
                """
                INSERT INTO usage_event SELECT
                    md5(g::text || 'dashboard')::uuid,
                    %(start)s + ((g::bigint * %(span)s) / %(n)s) * interval '1 second',
                    %(org)s, (%(ids)s::bigint[])[1 + g %% %(datasets)s], NULL, NULL, NULL,
                    (ARRAY['download', 'detail', 'rows', 'export', 'download'])[1 + g %% 5],
                    CASE WHEN g %% 50 = 0 THEN 500 ELSE 200 END, 5 + (g * 7) %% 90, 1000,
                    'PH', 'Chrome', 'regular', 'c' || (g %% 10000), ''
                FROM generate_series(%(first)s, %(last)s) g
                """,
                {
                    "start": start,
                    "span": span,
                    "n": events,
                    "org": prepared["datasets"][0].organization_id,
                    "ids": ids,
                    "datasets": DATASETS,
                    "first": first + 1,
                    "last": min(events, first + 1_000_000),
                },
            )
        cursor.execute("ANALYZE usage_event")
    say(f"  wrote {events:,} raw events over {DAYS} days in {time.perf_counter() - begun:.0f} s")
    days_mark_due(days=[first_day + timedelta(days=i) for i in range(DAYS)])
    begun = time.perf_counter()
    rolled = rollups_run_due(limit=DAYS + 1)
    say(
        f"  rolled up {len(rolled)} days in {time.perf_counter() - begun:.0f} s "
        f"({events / (time.perf_counter() - begun):,.0f} events/s)"
    )

    user = prepared["user"]

    def from_rollups():
        datasets = list(selectors.stewarded_datasets(user))
        rows = selectors.dataset_health_rows(datasets=datasets, day=today)
        selectors.daily_totals(user=user, start=first_day, end=today)
        return {r.dataset.pk: (r.downloads_7d, r.downloads_30d, r.api_calls_30d) for r in rows}

    def from_raw():
        with connection.cursor() as cursor:
            cursor.execute(
                RAW_HEALTH,
                {
                    "start30": start,
                    "start7": today - timedelta(days=6),
                    "end": start + timedelta(days=DAYS),
                    "ids": ids,
                },
            )
            return {row[0]: (row[1] or 0, row[2], row[3]) for row in cursor.fetchall()}

    rollup_seconds, rollup_figures = _timed(from_rollups, 5)
    raw_seconds, raw_figures = _timed(from_raw, 3)
    same = all(rollup_figures[pk] == raw_figures.get(pk, (0, 0, 0)) for pk in ids)
    say(f"  dashboard from rollups {rollup_seconds * 1000:8.1f} ms")
    say(f"  same from the raw log  {raw_seconds * 1000:8.1f} ms   figures equal: {same}")
    return raw_seconds / rollup_seconds, rollup_seconds * 1000


# --- the run --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per load round")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--rounds", type=int, default=3, help="recording on/off rounds (3)")
    parser.add_argument("--events", type=int, default=1_000_000, help="through the path")
    parser.add_argument(
        "--dashboard-events", type=int, default=10_000_000, help="under the dashboard"
    )
    parser.add_argument(
        "--part",
        action="append",
        choices=["recording", "ingest", "dashboard"],
        help="run only this part (repeatable); default all three",
    )
    args = parser.parse_args()
    parts = args.part or ["recording", "ingest", "dashboard"]

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dataset_publisher")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    with (
        tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp,
        postgres_database(server) as database,
        s3_server(Path(tmp) / "moto.log") as endpoint,
    ):
        var = Path(tmp)
        env = {
            **service_env(database=database, redis=redis, endpoint=endpoint, var=var),
            "USAGE_BUFFER_KEY": f"bench-usage-{os.getpid()}:events",
        }
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        prepared = prepare()
        from django.db import connections

        connections.close_all()
        results: dict[str, float] = {}
        dashboard_ms = None
        try:
            if "recording" in parts:
                say(
                    f"1. Signed URLs, recording on vs off ({args.clients} clients, "
                    f"{args.rounds} alternating rounds)"
                )
                results["recording"] = bench_recording(
                    env, var, prepared["token"], args.seconds, args.clients, args.rounds
                )
            if "ingest" in parts:
                say(f"2. {args.events:,} events: the recording path vs a raw COPY")
                results["ingest"] = bench_ingest(prepared, args.events)
            if "dashboard" in parts:
                say(f"3. The health dashboard over {args.dashboard_events:,} events")
                results["dashboard"], dashboard_ms = bench_dashboard(
                    prepared, args.dashboard_events
                )
        finally:
            from usage.services import buffer

            client = buffer.redis_client()
            client.delete(buffer.buffer_key(), buffer.lock_key())
            connections.close_all()
        say("")
        for name, ratio in results.items():
            verdict = "ok" if ratio >= GOALS[name] else "BELOW GOAL"
            say(f"  {name:<10} {ratio:7.2f}x   goal >= {GOALS[name]:g}x  {verdict}")
        headline = ", ".join(
            f"{name} {ratio:.2f} (goal {GOALS[name]:g})" for name, ratio in results.items()
        )
        if dashboard_ms is not None:
            verdict = "ok" if dashboard_ms < DASHBOARD_MS_GOAL else "ABOVE GOAL"
            say(f"  dashboard  {dashboard_ms:7.1f} ms  goal < {DASHBOARD_MS_GOAL} ms  {verdict}")
            headline += f", dashboard {dashboard_ms:.0f} ms (goal < {DASHBOARD_MS_GOAL})"
        say(f"usage ratios: {headline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
