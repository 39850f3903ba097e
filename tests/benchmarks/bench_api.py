"""Benchmark of the REST API against baselines measured in the same run.

    python tests/benchmarks/bench_api.py [--seconds 5] [--rounds 3] [--clients 4]
        [--rows-mib 1024] [--profile-requests 300] [--profile-only] [--sync-workers]

Serves the app with gunicorn (2 workers with the product's `config/gunicorn.py`, or
gunicorn's sync workers with --sync-workers; the services mode: PostgreSQL and Redis from
DATABASE_URL and REDIS_URL, a database of its own for this run, and moto's S3 server on
a free loopback port) and loads it from this machine, each run for the same time with
the same clients:

- a bare Django view returning a small JSON document (the baseline),
- GET /api/v1/datasets/?page_size=50, GET .../download/ (a signed URL), GET
  /api/v1/manifest/ with If-None-Match (a 304), all with a token;
- GET .../rows/?limit=1000&columns=<3>&offset=<deep> on a dataset of --rows-mib MiB
  (1 GiB by default) published through the real pipeline, against a floor: pyarrow
  reading the same rows and columns from a local Parquet file and encoding them as
  JSON in-process, in as many processes as gunicorn has workers.

First a per-stage profile of each target (`api_profile`: in this process, through
Django's test client, microseconds per stage: token lookup, the rate limit's round trip,
the cached answer, presigning, DRF's machinery, the usage middleware). Then, per target,
--rounds alternating runs of the target and its floor (`measure.alternate`); each ratio
is the median of the per-round ratios, with their spread, and says when it is too noisy
to trust. The ratios are printed last. Exits 0 when the run completed (the ratios are
reported against their goals, not enforced).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
BUCKET = "bench-api"
WORKERS = 2
ROWS_COLUMNS = ["store_id", "units", "revenue"]
GOALS = {"list": 0.35, "download": 0.5, "manifest_304": 0.7, "rows": 0.6}

from tests.benchmarks.api_load import load  # noqa: E402
from tests.benchmarks.measure import Goal, alternate, ratio_line  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, *, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out waiting for {message}.")
        time.sleep(0.2)


# --- the services ---------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    import psycopg

    parsed = urlparse(server_url)
    name = f"dataset_publisher_bench_api_{os.getpid()}"
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(parsed._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def s3_server(log: Path) -> Iterator[str]:
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                region_name="us-east-1",
            )

            def up() -> bool:
                try:
                    s3.list_buckets()
                except Exception:
                    return False
                return True

            wait_for(up, timeout=30, message="the S3 server")
            s3.create_bucket(Bucket=BUCKET)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path, options: tuple[str, ...] = ()) -> Iterator[str]:
    """gunicorn on a free loopback port; `options` go on its command line after ours
    (e.g. `("-c", "config/gunicorn.py")` for the product's threaded workers)."""
    import requests

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "config.wsgi",
                "--workers",
                str(WORKERS),
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return proc.poll() is not None

        try:
            wait_for(up, timeout=60, message="gunicorn")
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn stopped:\n{log.read_text()}")
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- the data -------------------------------------------------------------------------


def write_big_csv(path: Path, target_bytes: int) -> None:
    """A CSV of about `target_bytes`, written in chunks of 500,000 rows: 7 columns,
    ~55 bytes a row. One chunk of random values is made once; each chunk written gets
    its own ids and days, so every row differs."""
    import random
    from datetime import date, timedelta

    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = random.Random(42)
    chunk = 500_000
    regions = ["NCR", "Central Luzon", "CALABARZON", "Central Visayas", "Davao"]
    days = pa.array([date(2024, 1, 1) + timedelta(days=i % 366) for i in range(chunk)])
    fixed = {
        "store_id": pa.array([f"ST{rng.randint(1, 2000):04d}" for _ in range(chunk)]),
        "region": pa.array([rng.choice(regions) for _ in range(chunk)]),
        "units": pa.array([rng.randint(1, 500) for _ in range(chunk)]),
        "revenue": pa.array([round(rng.uniform(1, 9000), 2) for _ in range(chunk)]),
        "is_holiday": pa.array([rng.random() < 0.05 for _ in range(chunk)]),
    }
    first, start = True, 0
    with path.open("wb") as out:
        while out.tell() < target_bytes:
            ids = pa.array(range(start, start + chunk), type=pa.int64())
            table = pa.table({"id": ids, "day": days, **fixed})
            pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=first))
            first, start = False, start + chunk


def prepare(var: Path, rows_bytes: int) -> dict:
    """Everything the load needs, made through the product's own services."""
    import io

    from django.contrib.auth import get_user_model

    from catalog.audit import Actor
    from catalog.models import Role
    from catalog.services import dataset_create, membership_set, organization_create
    from catalog.storage import get_object_store
    from catalog.tokens import token_create
    from versioning.columnar import columnar_copy_make
    from versioning.models import DatasetVersion, JobSource
    from versioning.services import publish_job_create, publish_job_run

    system = Actor.system(via="command")
    org = organization_create(slug="scout", name="Scout", actor=system)
    user = get_user_model().objects.create_user(username="bench", password=secrets.token_hex())
    membership_set(organization=org, user=user, role=Role.STEWARD, actor=system)
    _, token = token_create(user=user, name="bench", scopes=["read"], actor=system)

    def publish(dataset, stream, filename):
        job = publish_job_create(
            dataset=dataset,
            stream=stream,
            filename=filename,
            actor=system,
            source=JobSource.COMMAND,
        )
        job = publish_job_run(job_id=job.pk)
        assert job.status == "succeeded", job.message
        return job.version

    small = b"date_key,store_id,revenue\n" + b"".join(
        f"2024-08-{1 + i % 28:02d},ST{i:04d},{i * 1.5}\n".encode() for i in range(500)
    )
    for i in range(60):
        dataset = dataset_create(
            organization=org,
            layer="gold",
            name=f"dataset_{i:02d}",
            actor=system,
            title=f"Dataset {i}",
            description="Daily aggregates by store and region",
            tags=["sales"],
        )
        if i % 6 == 0:
            publish(dataset, io.BytesIO(small + f"9999-12-31,X,{i}\n".encode()), "d.csv")

    big = dataset_create(organization=org, layer="platinum", name="big_events", actor=system)
    path = var / "big.csv"
    started = time.perf_counter()
    write_big_csv(path, rows_bytes)
    say(
        f"  wrote {path.stat().st_size / 2**20:,.0f} MiB of CSV in "
        f"{time.perf_counter() - started:.0f} s"
    )
    started = time.perf_counter()
    with path.open("rb") as stream:
        version = publish(big, stream, "big.csv")
    say(f"  published it in {time.perf_counter() - started:.0f} s ({version.row_count:,} rows)")
    path.unlink()
    started = time.perf_counter()
    key = columnar_copy_make(version=version)
    DatasetVersion.objects.filter(pk=version.pk).update(columnar_key=key)
    say(f"  columnar copy in {time.perf_counter() - started:.0f} s")
    local = var / "big.parquet"
    with get_object_store().open(key) as source, local.open("wb") as out:
        while chunk := source.read(8 * 2**20):
            out.write(chunk)
    return {"token": token, "rows": version.row_count, "parquet": str(local)}


# --- the rows floor -------------------------------------------------------------------


def _floor_process(path: str, offset: int, limit: int, seconds: float, out) -> None:
    import pyarrow.parquet as pq

    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        parquet = pq.ParquetFile(path)
        groups, first, start = [], None, 0
        for index in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            if start + rows > offset and start < offset + limit:
                groups.append(index)
                first = start if first is None else first
            start += rows
        table = parquet.read_row_groups(groups, columns=ROWS_COLUMNS).slice(offset - first, limit)
        body = json.dumps({"results": table.to_pylist()}, separators=(",", ":")).encode()
        assert body
        done += 1
    out.put(done)


def rows_floor(path: str, offset: int, limit: int, seconds: float) -> float:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(target=_floor_process, args=(path, offset, limit, seconds, queue))
        for _ in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    total = sum(queue.get(timeout=seconds + 120) for _ in procs)
    for proc in procs:
        proc.join(30)
    return total / seconds


# --- the run --------------------------------------------------------------------------


def service_env(*, database: str, redis: str, endpoint: str, var: Path) -> dict[str, str]:
    """The environment of a services-mode run on this machine's servers, with the rate
    limits out of the way (the benchmarks measure the work, not the limits)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.benchmarks.api_settings",
        "BENCH_RUN_ID": str(os.getpid()),
        # Every request's usage event waits in Redis (nothing ingests it during the
        # run): under a key of the run's own, removed at its end (`run_keys_removed`).
        "USAGE_BUFFER_KEY": f"bench-{os.getpid()}:usage-events",
        "DATABASE_URL": database,
        "REDIS_URL": redis,
        "S3_ENDPOINT_URL": endpoint,
        "S3_BUCKET": BUCKET,
        "S3_ACCESS_KEY_ID": "bench",
        "S3_SECRET_ACCESS_KEY": "bench",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "VAR_DIR": str(var),
        "LOG_LEVEL": "WARNING",
        "API_RATE": "100000000/min",
        "API_SIGNED_URL_RATE": "100000000/min",
        # gunicorn replaces a worker after GUNICORN_MAX_REQUESTS requests, and the new
        # one's start (about 1.5 CPU seconds of imports) lands in whichever run is going:
        # noise in one run and not in the one beside it, never a difference between the
        # targets (each request pays the same share of it).
        "GUNICORN_MAX_REQUESTS": "0",
    }


@contextlib.contextmanager
def run_keys_removed(redis_url: str) -> Iterator[None]:
    """Removes this run's keys from Redis at its end: its usage events (hundreds of
    thousands of lines a run) and its cache entries."""
    try:
        yield
    finally:
        import redis as redis_py

        client = redis_py.Redis.from_url(redis_url)
        keys = [f"bench-{os.getpid()}:usage-events"]
        keys += client.scan_iter(match=f"bench-api-{os.getpid()}:*", count=1000)
        client.delete(*keys)
        client.close()


def profile(targets: dict[str, tuple[str, dict]], requests: int) -> None:
    """The per-stage breakdown of each target, in this process (see api_profile)."""
    from django.test import Client

    from tests.benchmarks.api_profile import breakdown_lines, stages_profile

    client = Client(HTTP_HOST="127.0.0.1")
    say(f"Per-stage profile: in-process (Django's test client), {requests} requests each")
    for name, (path, headers) in targets.items():
        expected = 304 if name == "manifest_304" else 200

        def get(path=path, headers=headers, expected=expected):
            response = client.get(path, headers=headers)
            assert response.status_code == expected, (path, response.status_code)

        for line in breakdown_lines(name, stages_profile(get, requests=requests)):
            say(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--rows-mib", type=int, default=1024, help="size of the rows dataset")
    parser.add_argument(
        "--profile-requests", type=int, default=300, help="requests per target in the profile"
    )
    parser.add_argument(
        "--profile-only", action="store_true", help="the per-stage profile, without the load"
    )
    parser.add_argument(
        "--sync-workers",
        action="store_true",
        help="serve with gunicorn's default sync workers instead of the product's own "
        "settings (config/gunicorn.py: gthread workers, as README runs it), for every "
        "target and the bare view alike",
    )
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dataset_publisher")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
        run_keys_removed(redis),
        postgres_database(server) as database,
        s3_server(Path(tmp) / "moto.log") as endpoint,
    ):
        var = Path(tmp)
        env = service_env(database=database, redis=redis, endpoint=endpoint, var=var)
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        say("Preparing the data through the product's services...")
        data = prepare(var, args.rows_mib * 2**20)

        auth = {"Authorization": f"Bearer {data['token']}"}
        deep = int(data["rows"] * 0.9)
        rows_path = (
            f"/api/v1/datasets/platinum/big_events/rows/?limit=1000"
            f"&columns={','.join(ROWS_COLUMNS)}&offset={deep}"
        )
        from django.test import Client

        etag = Client(HTTP_HOST="127.0.0.1").get("/api/v1/manifest/", headers=auth)["ETag"]
        paths = {
            "bare": ("/bench/bare/", {}),
            "list": ("/api/v1/datasets/?page_size=50", auth),
            "download": ("/api/v1/datasets/gold/dataset_00/download/", auth),
            "manifest_304": ("/api/v1/manifest/", {**auth, "If-None-Match": etag}),
            "rows": (rows_path, auth),
        }
        profile(paths, args.profile_requests)
        from django.db import connections

        connections.close_all()
        if args.profile_only:
            return 0

        rounds = {}
        options = () if args.sync_workers else ("-c", "config/gunicorn.py")
        with gunicorn(env, var / "gunicorn.log", options) as base:
            import requests

            for name, (path, headers) in paths.items():
                check = requests.get(f"{base}{path}", headers=headers, timeout=60)
                expected = 304 if name == "manifest_304" else 200
                assert check.status_code == expected, (name, check.status_code, check.text[:300])
                if name == "rows":
                    assert len(check.json()["results"]) == 1000
            say(
                f"Load: {args.clients} clients, {args.seconds:g} s per run, {WORKERS} "
                f"{'sync' if args.sync_workers else 'threaded (gthread)'} workers, "
                f"{args.rounds} alternating rounds of each target and its floor"
            )

            def measure(name: str):
                path, headers = paths[name]

                def run() -> float:
                    r = load(
                        f"{base}{path}", headers=headers, seconds=args.seconds, clients=args.clients
                    )
                    say(
                        f"  {name:<13} {r['rps']:8.0f} req/s   p99 {r['p99_ms']:7.1f} ms"
                        f"   {r['statuses']}"
                    )
                    return r["rps"]

                return run

            for name in ("list", "download", "manifest_304"):
                rounds[name] = alternate(
                    {name: measure(name), "bare": measure("bare")},
                    rounds=args.rounds,
                    report=None,
                )

            def floor() -> float:
                rps = rows_floor(data["parquet"], deep, 1000, args.seconds)
                say(
                    f"  {'rows floor':<13} {rps:8.0f} req/s   (pyarrow + JSON, {WORKERS} processes)"
                )
                return rps

            rounds["rows"] = alternate(
                {"rows": measure("rows"), "floor": floor}, rounds=args.rounds, report=None
            )

        say("")
        for name, taken in rounds.items():
            floor_name = "floor" if name == "rows" else "bare"
            say(f"  {name:<13} req/s {taken[name]}")
            say(f"  {floor_name:<13} req/s {taken[floor_name]}")
        say("")
        for name, taken in rounds.items():
            floor_name = "floor" if name == "rows" else "bare"
            say(
                ratio_line(
                    f"ratio_api_{name}_to_{'rows_floor' if name == 'rows' else 'bare_view'}",
                    taken[name],
                    taken[floor_name],
                    goal=Goal.at_least(GOALS[name]),
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
