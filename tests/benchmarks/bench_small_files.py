"""Small files, many of them: publishing ~100 KB CSVs often, end to end, against a floor.

    python tests/benchmarks/bench_small_files.py [--datasets 20] [--files 10]
        [--size-kib 100] [--rounds 3] [--publish-concurrency 2] [--redis-db 9]

Pipelines and edge devices publish small files often. The run takes the shape of a
fleet of edge devices: --datasets datasets (20), one client each, all in parallel, each
publishing --files files (10) to its own dataset one after the other, so 200 files a
round. Every file is a real change (new rows), so every publish makes a new version.

ours    each client POSTs the multipart upload to the real publish endpoint (gunicorn
        with the product's threaded workers, an API token), follows the job it gets
        back (GET .../publish-jobs/<id>/?wait=20, answered when the job is finished),
        and then reads GET /api/v1/manifest/ until its version is listed there:
        that is when the file is done. Behind it: a celery worker on the publish queue
        (--publish-concurrency processes, as README runs it) and one on the events queue
        (the manifest's upload to storage, the columnar copy, lineage), both running all
        the time, as the product runs them.
floor   the same clients, same files, same concurrency: boto3 `put_object` of the file
        to the same moto S3 server, then one INSERT of a row naming it into a table in
        the same PostgreSQL database (one connection per client, autocommit).

Throughput (files per second) of each is taken in alternating rounds (ours, floor,
ours, floor, ...); the ratio ours/floor is the median of the per-round ratios, with its
spread (`measure.py`). Also printed: p50 and p95 from the start of the upload to the
version in the manifest, and where a publish spends its time: the client's view (the
upload request, waiting for the job, reading the manifest), the job's (queued before a
worker claimed it, in the worker) and the worker's steps (publish_steps.py, with the
queries each job ran), and how long after its commit each manifest reached storage.
The ratio is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_api import (  # noqa: E402
    BUCKET,
    gunicorn,
    postgres_database,
    run_keys_removed,
    s3_server,
    service_env,
)
from tests.benchmarks.bench_publish import Worker, _children, product_env  # noqa: E402
from tests.benchmarks.measure import Goal, alternate, percentile, ratio_line  # noqa: E402

ORG = "edge"
GOAL = Goal.at_least(0.3)
POLL_SECONDS = 0.05  # how often a client reads the manifest again (--poll-ms)
FILE_TIMEOUT_SECONDS = 300
FLOOR_TABLE = "bench_small_floor"


def say(text: str) -> None:
    print(text, flush=True)


# --- the data -------------------------------------------------------------------------


def make_csv(*, seed: int, size: int) -> bytes:
    """A CSV of about `size` bytes, five columns; different bytes for every seed."""
    rng = random.Random(seed)
    lines = ["day,device_id,reading,temperature,ok"]
    total = len(lines[0]) + 1
    start = date(2024, 1, 1) + timedelta(days=seed % 300)
    n = 0
    while total < size:
        line = (
            f"{start + timedelta(days=n % 30)},D{rng.randint(1, 9999):05d},"
            f"{rng.randint(0, 100000)},{rng.uniform(-20, 45):.2f},{rng.random() < 0.9}"
        )
        lines.append(line)
        total += len(line) + 1
        n += 1
    return ("\n".join(lines) + "\n").encode()


def round_files(round_no: int, datasets: int, files: int, size: int) -> list[list[bytes]]:
    """The files of one round: `files` per dataset, each unlike any other in the run."""
    return [
        [make_csv(seed=(round_no * 1000 + d) * 1000 + i, size=size) for i in range(files)]
        for d in range(datasets)
    ]


def dataset_name(d: int) -> str:
    return f"device_{d:03d}"


# --- running clients in parallel ------------------------------------------------------


def in_parallel(clients: list[Callable[[], None]]) -> float:
    """Runs every client in its own thread, started together; returns the wall time."""
    errors: list[BaseException] = []
    gate = threading.Barrier(len(clients) + 1)

    def run(client: Callable[[], None]) -> None:
        gate.wait()
        try:
            client()
        except BaseException as exc:  # reported below, the run is void
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


# --- ours: the API and the workers ----------------------------------------------------


class Ours:
    def __init__(self, base: str, token: str, datasets: int, files: int, size: int) -> None:
        self.base, self.token = base, token
        self.datasets, self.files, self.size = datasets, files, size
        self.round = 0
        self.latencies: list[float] = []
        self.parts: dict[str, list[float]] = {"upload": [], "job": [], "manifest": []}
        self.job_ids: list[str] = []

    def __call__(self) -> float:
        self.round += 1
        corpus = round_files(self.round * 2, self.datasets, self.files, self.size)
        latencies: list[float] = []
        lock = threading.Lock()

        def client(d: int) -> Callable[[], None]:
            def run() -> None:
                import requests

                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {self.token}"
                path = f"gold/{dataset_name(d)}"
                for i, body in enumerate(corpus[d]):
                    timings = self._publish_one(session, path, f"r{self.round}-{i}.csv", body)
                    with lock:
                        latencies.append(sum(timings.values()))
                        for part, seconds in timings.items():
                            self.parts[part].append(seconds)

            return run

        elapsed = in_parallel([client(d) for d in range(self.datasets)])
        self.latencies.extend(latencies)
        say(
            f"  ours round {self.round}: {len(latencies)} files in {elapsed:.2f} s; "
            f"upload to manifest p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms"
        )
        return len(latencies) / elapsed

    def _publish_one(self, session, path: str, filename: str, body: bytes) -> dict[str, float]:
        started = time.perf_counter()
        answer = session.post(
            f"{self.base}/api/v1/datasets/{path}/versions/",
            files={"file": (filename, io.BytesIO(body), "text/csv")},
            timeout=60,
        )
        if answer.status_code != 202:
            raise RuntimeError(f"Upload refused: {answer.status_code} {answer.text[:300]}")
        job = answer.json()
        self.job_ids.append(job["id"])
        uploaded = time.perf_counter()
        deadline = started + FILE_TIMEOUT_SECONDS
        while job["status"] not in ("succeeded", "failed"):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"Job {job['id']} still {job['status']}.")
            # Held by the server until the job is finished (?wait), so no polling here.
            job = session.get(f"{self.base}{job['url']}?wait=20", timeout=60).json()
        if job["status"] != "succeeded" or job["outcome"] != "published":
            raise RuntimeError(f"Job {job['id']} {job['status']}: {job['message']}")
        finished = time.perf_counter()
        while True:
            manifest = session.get(f"{self.base}/api/v1/manifest/", timeout=30).json()
            if manifest["datasets"].get(path, {}).get("schema_version") == job["version"]:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{path} {job['version']} never reached the manifest.")
            time.sleep(POLL_SECONDS)
        done = time.perf_counter()
        return {
            "upload": uploaded - started,
            "job": finished - uploaded,
            "manifest": done - finished,
        }


# --- the floor: put_object and one row ------------------------------------------------


class Floor:
    def __init__(self, endpoint: str, database: str, datasets: int, files: int, size: int) -> None:
        self.endpoint, self.database = endpoint, database
        self.datasets, self.files, self.size = datasets, files, size
        self.round = 0
        self.latencies: list[float] = []

    def __call__(self) -> float:
        import boto3
        import psycopg
        from botocore.config import Config

        self.round += 1
        corpus = round_files(self.round * 2 + 1, self.datasets, self.files, self.size)
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
            config=Config(max_pool_connections=self.datasets),
        )
        connections = [psycopg.connect(self.database, autocommit=True) for _ in corpus]
        latencies: list[float] = []
        lock = threading.Lock()

        def client(d: int) -> Callable[[], None]:
            def run() -> None:
                conn = connections[d]
                for i, body in enumerate(corpus[d]):
                    started = time.perf_counter()
                    key = f"floor/{self.round}/{dataset_name(d)}/{i}.csv"
                    s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="text/csv")
                    conn.execute(
                        f"INSERT INTO {FLOOR_TABLE} (key, size_bytes) VALUES (%s, %s)",
                        (key, len(body)),
                    )
                    with lock:
                        latencies.append(time.perf_counter() - started)

            return run

        try:
            elapsed = in_parallel([client(d) for d in range(self.datasets)])
        finally:
            for conn in connections:
                conn.close()
        self.latencies.extend(latencies)
        say(
            f"  floor round {self.round}: {len(latencies)} files in {elapsed:.2f} s; "
            f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms"
        )
        return len(latencies) / elapsed


# --- CPU by process -------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of_tree(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants, living ones."""
    total = 0.0
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    for child in _children(pid):
        total += _cpu_of_tree(child)
    return total


def _label(pid: int) -> str:
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        text = " ".join(a.decode(errors="replace") for a in argv)
        if "gunicorn" in text:
            return "web (gunicorn)"
        if "moto_server" in text:
            return "S3 (moto)"
        if "celery" in text:
            return "events worker" if "-events" in text else "publish worker"
    return "other"


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far of this process (the clients) and of each service it started.
    PostgreSQL and Redis are shared servers, not counted."""
    usage = os.times()
    taken = {"clients (this process)": usage.user + usage.system}
    for child in _children(os.getpid()):
        label = _label(child)
        taken[label] = taken.get(label, 0.0) + _cpu_of_tree(child)
    return taken


class CpuPerFile:
    """Wraps a measure: the CPU each process spent per file over all its rounds."""

    def __init__(self, measure: Callable[[], float], files: int) -> None:
        self.measure, self.files = measure, files
        self.spent: dict[str, float] = {}
        self.done = 0

    def __call__(self) -> float:
        before = cpu_snapshot()
        value = self.measure()
        after = cpu_snapshot()
        for label, seconds in after.items():
            self.spent[label] = self.spent.get(label, 0.0) + seconds - before.get(label, 0.0)
        self.done += self.files
        return value

    def __str__(self) -> str:
        total = sum(self.spent.values()) / self.done * 1000
        parts = ", ".join(
            f"{label} {seconds / self.done * 1000:.0f}"
            for label, seconds in sorted(self.spent.items(), key=lambda kv: -kv[1])
        )
        return f"{total:.0f} ms ({parts})"


# --- setting up and reading back ------------------------------------------------------


def prepare(datasets: int, history: int = 0) -> str:
    """The organisation, a steward with a read+publish token, the datasets (each with
    `history` earlier versions, as a device that has published for a long time leaves)
    and the floor's table, made through the product's services; returns the token."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from catalog.audit import Actor
    from catalog.models import Role
    from catalog.services import dataset_create, membership_set, organization_create
    from catalog.tokens import token_create

    system = Actor.system(via="command")
    org = organization_create(slug=ORG, name="Edge fleet", actor=system)
    user = get_user_model().objects.create_user(username="device-fleet", password=uuid.uuid4().hex)
    membership_set(organization=org, user=user, role=Role.STEWARD, actor=system)
    _, token = token_create(user=user, name="fleet", scopes=["read", "publish"], actor=system)
    for d in range(datasets):
        dataset_create(
            organization=org,
            layer="gold",
            name=dataset_name(d),
            actor=system,
            title=f"Device {d}",
            description="Readings from one edge device",
        )
    if history:
        history_add(history)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {FLOOR_TABLE} (id bigserial PRIMARY KEY, key text NOT NULL, "
            "size_bytes bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
    return token


def history_add(versions: int) -> None:
    """`versions` earlier versions (0.1.0, 0.2.0, ...) of every dataset of the fleet,
    archived, their files long gone: numbers the publishes must not take."""
    from django.utils import timezone

    from catalog.models import Dataset
    from versioning.models import DatasetVersion, VersionStatus
    from versioning.semver import Version, version_fields

    then = timezone.now() - timedelta(days=365)
    for dataset in Dataset.objects.filter(organization__slug=ORG):
        DatasetVersion.objects.bulk_create(
            (
                DatasetVersion(
                    dataset=dataset,
                    **version_fields(Version(0, n, 0)),
                    status=VersionStatus.ARCHIVED,
                    key=f"{ORG}/history/{dataset.name}/{n}.csv",
                    format="csv",
                    content_type="text/csv",
                    size_bytes=100 * 1024,
                    sha256=f"{n:064x}",
                    row_count=1000,
                    published_at=then + timedelta(minutes=n),
                )
                for n in range(1, versions + 1)
            ),
            batch_size=5000,
        )


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


def breakdown(job_ids: list[str], steps_file: Path) -> None:
    """Where a publish spent its time, in medians over every file of every round."""
    from versioning.models import Manifest, PublishJob

    jobs = PublishJob.objects.filter(pk__in=job_ids)
    queued = [(j.started_at - j.created_at).total_seconds() for j in jobs if j.started_at]
    working = [
        (j.finished_at - j.started_at).total_seconds()
        for j in jobs
        if j.finished_at and j.started_at
    ]
    attempts = [j.attempts for j in jobs]
    say(
        f"  jobs: created to claimed {median_ms(queued)} ms (p95 "
        f"{percentile(queued, 0.95) * 1000:.0f}), claimed to finished {median_ms(working)} ms "
        f"(p95 {percentile(working, 0.95) * 1000:.0f}); attempts max {max(attempts)}"
    )
    steps: dict[str, list[float]] = {}
    if steps_file.exists():
        for line in steps_file.read_text().splitlines():
            for name, value in json.loads(line).items():
                steps.setdefault(name, []).append(value)
    if steps:
        queries = steps.pop("db queries", [])
        listed = ", ".join(f"{name} {median_ms(values)}" for name, values in steps.items())
        say(f"  worker steps, median ms per publish: {listed}")
        if queries:
            say(f"  queries per publish in the worker: median {statistics.median(queries):.0f}")
    lags = [
        (m.written_at - m.generated_at).total_seconds()
        for m in Manifest.objects.filter(organization__slug=ORG, written_at__isnull=False)
    ]
    if lags:
        say(
            f"  manifest to storage after its commit (events worker): median "
            f"{median_ms(lags)} ms, p95 {percentile(lags, 0.95) * 1000:.0f} ms, "
            f"{len(lags)} manifests written"
        )


def redis_url(db: int) -> str:
    parsed = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    return urlunparse(parsed._replace(path=f"/{db}"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=20, help="datasets, one client each")
    parser.add_argument("--files", type=int, default=10, help="files per dataset per round")
    parser.add_argument("--size-kib", type=int, default=100, help="size of each file (100)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument(
        "--publish-concurrency", type=int, default=2, help="publish worker processes (2)"
    )
    parser.add_argument("--redis-db", type=int, default=9, help="the run's Redis database (9)")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="earlier versions of each dataset before the run (0: new datasets)",
    )
    parser.add_argument(
        "--poll-ms",
        type=int,
        default=50,
        help="how often a client reads the manifest again while its version is not there",
    )
    args = parser.parse_args(argv)
    global POLL_SECONDS
    POLL_SECONDS = args.poll_ms / 1000
    size = args.size_kib * 1024
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dataset_publisher")
    with (
        tempfile.TemporaryDirectory(prefix="bench-small-") as tmp,
        run_keys_removed(redis_url(args.redis_db)),
        postgres_database(server) as database,
        s3_server(Path(tmp) / "moto.log") as endpoint,
    ):
        var = Path(tmp)
        steps_file = var / "steps.jsonl"
        env = service_env(
            database=database, redis=redis_url(args.redis_db), endpoint=endpoint, var=var
        )
        # The publish benchmark's settings: this run's queues (publish, and its events
        # apart) and cache keys, on a Redis database of the run's own.
        env = product_env(
            var,
            **{k: v for k, v in env.items() if k not in ("DJANGO_SETTINGS_MODULE", "VAR_DIR")},
        )
        env["BENCH_STEPS_FILE"] = str(steps_file)
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        token = prepare(args.datasets, args.history)
        from django.db import connections

        connections.close_all()
        say(
            f"Fleet: {args.datasets} datasets x {args.files} files of {args.size_kib} KiB a "
            f"round, {args.datasets} clients in parallel (one per dataset), closed loop; "
            f"{args.history} earlier versions each; "
            f"publish worker concurrency {args.publish_concurrency}, events worker 1; "
            "gunicorn -c config/gunicorn.py (2 processes, threaded)"
        )
        workers = []
        try:
            workers.append(Worker(env, var / "worker.log", concurrency=args.publish_concurrency))
            workers.append(Worker(env, var / "events.log", events=True))
            with gunicorn(env, var / "gunicorn.log", ("-c", "config/gunicorn.py")) as base:
                ours = Ours(base, token, args.datasets, args.files, size)
                floor = Floor(endpoint, database, args.datasets, args.files, size)
                # A few publishes first, so the first round does not pay for warming up.
                warm = Ours(base, token, args.datasets, 1, size)
                warm.round = 10_000
                warm()
                if steps_file.exists():
                    steps_file.unlink()
                per_round = args.datasets * args.files
                ours_cpu, floor_cpu = CpuPerFile(ours, per_round), CpuPerFile(floor, per_round)
                rounds = alternate({"ours": ours_cpu, "floor": floor_cpu}, rounds=args.rounds)
                say("Where a publish spends its time:")
                say(
                    f"  client: upload request {median_ms(ours.parts['upload'])} ms, "
                    f"job done after {median_ms(ours.parts['job'])} ms, "
                    f"version seen in the manifest after {median_ms(ours.parts['manifest'])} ms "
                    "(medians)"
                )
                breakdown(ours.job_ids, steps_file)
                say(f"  CPU per file, ours: {ours_cpu}")
                say(f"  CPU per file, floor: {floor_cpu} (PostgreSQL and Redis not counted)")
        finally:
            for started in workers:
                with contextlib.suppress(Exception):
                    started.stop()
            connections.close_all()
        say(f"throughput_ours_files_per_s: {rounds['ours']}")
        say(f"throughput_floor_files_per_s: {rounds['floor']}")
        say(
            f"latency_ours_upload_to_manifest_ms: p50 {percentile(ours.latencies, 0.5) * 1000:.0f}"
            f", p95 {percentile(ours.latencies, 0.95) * 1000:.0f} "
            f"({len(ours.latencies)} files)"
        )
        say(
            f"latency_floor_put_and_row_ms: p50 {percentile(floor.latencies, 0.5) * 1000:.0f}, "
            f"p95 {percentile(floor.latencies, 0.95) * 1000:.0f} ({len(floor.latencies)} files)"
        )
        say(ratio_line("ratio_small_files_throughput", rounds["ours"], rounds["floor"], goal=GOAL))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
