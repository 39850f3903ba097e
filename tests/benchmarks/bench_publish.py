"""Publishing a large CSV end to end through a real worker, against two floors.

One run generates a CSV of --size-mib MiB (twelve columns of mixed types, some nulls)
and measures, side by side on that file:

local (the embedded mode: SQLite, the folder task queue and objects on disk, all under
a temporary VAR_DIR, with a real `celery -A config worker`):
    hash floor    `openssl dgst -sha256` of the file
    parse floor   one pass of pyarrow's streaming CSV reader (`pyarrow.csv.open_csv`,
                  default options) over the file
    publish       what `manage.py publish --wait` does: stream the file to staging,
                  queue the job, the worker inspects, copies and commits, until the
                  job is finished
s3 (the services mode: a PostgreSQL database created for the run and dropped after,
Redis on a queue of its own, and moto's S3 server on a free loopback port):
    upload floor  boto3's `upload_file` of the file into the same bucket
    publish       as above, with the objects in that bucket

Each publish runs in a freshly started worker (one pool process) whose peak resident
set (VmHWM) is read when the job ends; a --small-mib file is published first in each
mode, which also warms the mode up. The work a publish's events start after the job
(the manifest upload, the columnar copy, lineage) runs next, in a worker of its own on
a queue of its own, and is reported beside the publish, not in it.

The floors and the local publish are taken --rounds times, interleaved, the best of each
kept, because the machines are shared and noisy; the S3 publish (slow against moto) is
taken --s3-rounds times, with the upload floor before and after each. Timings print as
they are taken, then a summary, then the ratios, last. --steps also times each step of
the pipeline inside the worker (publish_worker.py).

At most two generated files exist at a time (the large and the small one); between
rounds the previous round's published object is removed from the throwaway storage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.publish_data import MiB, write_csv  # noqa: E402

BIN = Path(sys.executable).parent
SETTINGS = "tests.benchmarks.publish_settings"
# Everything that would move a part of the product to a service, or change its limits.
_PRODUCT_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CACHE_REDIS_URL",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_ADDRESSING_STYLE",
    "STREAM_CHUNK_BYTES",
    "DJANGO_SETTINGS_MODULE",
    "VAR_DIR",
    "DEBUG",
)
_BUCKET = "bench-publish"
_EVENT_TASK_SECONDS = re.compile(r"Task catalog\.deliver_events\[[^\]]*\] succeeded in ([0-9.]+)s")
_S3_CREDENTIALS = {"S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench"}


def say(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def wait_for(condition: Callable[[], object], *, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out after {timeout} s waiting for {message}.")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- the product's processes ---------------------------------------------------------


def product_env(var_dir: Path, *, steps: bool = False, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRODUCT_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        BENCH_QUEUE=f"bench-publish-{uuid.uuid4().hex[:12]}",
        VAR_DIR=str(var_dir),
        SECRET_KEY="bench-publish-" + "x" * 40,
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if steps:
        env["BENCH_STEPS_FILE"] = str(var_dir.parent / f"steps-{var_dir.name}.jsonl")
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def client(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.publish_client", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # The command name may hold spaces; the parent id follows the closing ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"No {field} for process {pid}.")


class Worker:
    """A `celery -A config worker` with `concurrency` pool processes (one by default), as
    `make worker` runs it, on the run's publish queue or (events=True) on its event
    deliveries' queue. `peak_rss_mib` reads the first pool process.

    With BENCH_STEPS_FILE in `env`, the app is the same one with the pipeline's steps
    timed (publish_worker.py).
    """

    def __init__(
        self, env: dict[str, str], log: Path, *, events: bool = False, concurrency: int = 1
    ) -> None:
        self.log = log
        queue = env["BENCH_QUEUE"] + ("-events" if events else "")
        self.proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "tests.benchmarks.publish_worker" if "BENCH_STEPS_FILE" in env else "config",
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--queues",
                queue,
                "--hostname",
                f"bench-publish-{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: "ready." in log.read_text() or self.proc.poll() is not None,
            timeout=60,
            message="the worker to start",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"The worker did not start:\n{log.read_text()}")
        self.child = wait_for(
            lambda: _children(self.proc.pid), timeout=30, message="the worker's pool process"
        )[0]

    def peak_rss_mib(self) -> float:
        """The pool process's peak resident set so far."""
        return _status_kib(self.child, "VmHWM") / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path, *, events: bool = False) -> Iterator[Worker]:
    started = Worker(env, log, events=events)
    try:
        yield started
    finally:
        started.stop()


def publish_in_fresh_worker(env: dict[str, str], path: Path, log: Path) -> dict:
    steps = Path(env["BENCH_STEPS_FILE"]) if "BENCH_STEPS_FILE" in env else None
    reported = len(steps.read_text().splitlines()) if steps and steps.exists() else 0
    with worker(env, log) as w:
        result = client(env, "publish", str(path))
        result["peak_rss_mib"] = w.peak_rss_mib()
        if steps:
            # The worker reports its steps just after it finishes the job.
            lines = wait_for(
                lambda: steps.exists() and steps.read_text().splitlines()[reported:],
                timeout=30,
                message="the worker's step timings",
            )
            result["steps"] = json.loads(lines[0])
    if result["status"] != "succeeded":
        raise RuntimeError(f"The publish failed: {result['message']}\n{log.read_text()}")
    result.update(drain_events(env, log.with_suffix(".events.log")))
    return result


def drain_events(env: dict[str, str], log: Path) -> dict:
    """Runs the event deliveries the publish left (the manifest's upload, the columnar
    copy, lineage) in a worker of their own, after the publish and apart from it."""
    with worker(env, log, events=True) as w:
        waited = client(env, "events-wait")
        peak = w.peak_rss_mib()
    if waited["failed"]:
        raise RuntimeError(f"Event handlers failed: {waited['failed']}\n{log.read_text()}")
    seconds = sum(float(found) for found in _EVENT_TASK_SECONDS.findall(log.read_text()))
    return {"events_s": seconds, "events_peak_rss_mib": peak, "events_sweeps": waited["sweeps"]}


def describe(result: dict) -> str:
    text = (
        f"{result['total_s']:.2f} (upload to staging {result['staging_s']:.2f}, "
        f"queued {result['queued_s']:.2f}, worker {result['worker_s']:.2f}; "
        f"worker peak RSS {result['peak_rss_mib']:.0f} MiB)"
    )
    text += (
        f"\n  after the job, its events in another worker: {result['events_s']:.2f} s, "
        f"peak RSS {result['events_peak_rss_mib']:.0f} MiB"
    )
    if result["events_sweeps"]:
        text += " (their first dispatch was lost; the sweeper task sent them again)"
    if "steps" in result:
        steps = ", ".join(f"{name} {value:.2f}" for name, value in result["steps"].items())
        text += f"\n  steps in the worker, s: {steps}"
    return text


# --- the services ---------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A database of its own for this run, migrated by the caller and dropped after."""
    import psycopg

    parsed = urlparse(server_url)
    name = f"dataset_publisher_bench_publish_{os.getpid()}"
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(parsed._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def s3_server(log: Path) -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the benchmark's bucket."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            s3 = s3_client(endpoint)

            def up() -> bool:
                try:
                    s3.list_buckets()
                except Exception:
                    return False
                return True

            wait_for(up, timeout=30, message="the S3 server")
            s3.create_bucket(Bucket=_BUCKET)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=_S3_CREDENTIALS["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=_S3_CREDENTIALS["S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


# --- the floors -----------------------------------------------------------------------


def hash_floor(path: Path) -> float:
    return timed(
        lambda: subprocess.run(
            ["openssl", "dgst", "-sha256", str(path)], check=True, stdout=subprocess.DEVNULL
        )
    )


def parse_floor(path: Path) -> float:
    import pyarrow.csv as pacsv

    def parse() -> None:
        rows = 0
        for batch in pacsv.open_csv(str(path)):
            rows += batch.num_rows

    return timed(parse)


def change_last_row(path: Path) -> None:
    """Appends a copy of the last row, so the next publish has new bytes to publish."""
    with path.open("rb+") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
        last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        handle.write(last + b"\n")


# --- the run --------------------------------------------------------------------------


class Series:
    """The values of one measure over the rounds; the best (lowest) one is reported."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> float:
        self.values.append(value)
        return value

    @property
    def best(self) -> float:
        return min(self.values)

    def __str__(self) -> str:
        if len(self.values) == 1:
            return f"{self.best:.2f}"
        spread = (max(self.values) / self.best - 1) * 100
        listed = ", ".join(f"{v:.2f}" for v in self.values)
        return f"{self.best:.2f} (best of {len(self.values)}: {listed}; spread {spread:.0f}%)"


def run_local(args, work: Path, big: Path, small: Path, results: dict) -> None:
    var_dir = work / "embedded"
    env = product_env(var_dir, steps=args.steps)
    manage(env, "migrate", "--noinput")
    client(env, "setup")
    warm = publish_in_fresh_worker(env, small, work / "worker-local-small.log")
    say(f"publish_local_{args.small_mib}mib_s", describe(warm))
    results["local_small_rss"] = warm["peak_rss_mib"]
    results["local_small_events_rss"] = warm["events_peak_rss_mib"]
    results["columns"] = ", ".join(f"{c['name']} {c['type']}" for c in warm["schema"])
    hashing, parsing, publishing, rss, events = Series(), Series(), Series(), Series(), Series()
    events_rss: list[float] = []
    previous_key = None
    for n in range(1, args.rounds + 1):
        say(f"round_{n}_hash_floor_s", f"{hashing.add(hash_floor(big)):.2f}")
        say(f"round_{n}_parse_floor_s", f"{parsing.add(parse_floor(big)):.2f}")
        result = publish_in_fresh_worker(env, big, work / f"worker-local-{n}.log")
        publishing.add(result["total_s"])
        rss.add(result["peak_rss_mib"])
        events.add(result["events_s"])
        events_rss.append(result["events_peak_rss_mib"])
        say(f"round_{n}_publish_local_s", describe(result))
        if previous_key:
            (var_dir / "objects" / previous_key).unlink(missing_ok=True)
        previous_key = result["key"]
        change_last_row(big)
    results.update(hash=hashing, parse=parsing, publish_local=publishing, events_local=events)
    results["local_big_rss"] = max(rss.values)
    results["local_big_events_rss"] = max(events_rss)
    shutil.rmtree(var_dir, ignore_errors=True)


def run_s3(args, work: Path, big: Path, small: Path, results: dict) -> None:
    server_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    # The Redis server named by REDIS_URL, but a database of its own: the test suite
    # flushes its database (cache.clear()), which would drop this run's queued tasks.
    redis = urlparse(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13")
    redis_url = urlunparse(redis._replace(path=f"/{args.redis_db}"))
    with (
        s3_server(work / "moto.log") as endpoint,
        postgres_database(server_url) as database_url,
    ):
        env = product_env(
            work / "services",
            steps=args.steps,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            S3_BUCKET=_BUCKET,
            S3_ENDPOINT_URL=endpoint,
            **_S3_CREDENTIALS,
        )
        manage(env, "migrate", "--noinput")
        client(env, "setup")
        s3 = s3_client(endpoint)
        warm = publish_in_fresh_worker(env, small, work / "worker-s3-small.log")
        say(f"publish_s3_{args.small_mib}mib_s", describe(warm))
        results["s3_small_rss"] = warm["peak_rss_mib"]
        results["s3_small_events_rss"] = warm["events_peak_rss_mib"]
        uploading, publishing, rss, events = Series(), Series(), Series(), Series()
        events_rss: list[float] = []

        def upload_floor(label: str) -> None:
            key = f"baseline/{label}.csv"
            seconds = timed(lambda: s3.upload_file(str(big), _BUCKET, key))
            say(f"{label}_upload_floor_s", f"{uploading.add(seconds):.2f}")
            s3.delete_object(Bucket=_BUCKET, Key=key)

        # The upload is timed before and after each publish: it is the cheaper measure,
        # and a publish into moto takes minutes (its UploadPartCopy reads the whole
        # source object for every part of the copy to the final key).
        upload_floor("round_1_before")
        previous_key = None
        for n in range(1, args.s3_rounds + 1):
            result = publish_in_fresh_worker(env, big, work / f"worker-s3-{n}.log")
            publishing.add(result["total_s"])
            rss.add(result["peak_rss_mib"])
            events.add(result["events_s"])
            events_rss.append(result["events_peak_rss_mib"])
            say(f"round_{n}_publish_s3_s", describe(result))
            if previous_key:
                s3.delete_object(Bucket=_BUCKET, Key=previous_key)
            previous_key = result["key"]
            change_last_row(big)
            upload_floor(f"round_{n}_after")
        results.update(upload=uploading, publish_s3=publishing, events_s3=events)
        results["s3_big_rss"] = max(rss.values)
        results["s3_big_events_rss"] = max(events_rss)
        forget_redis_keys(redis_url, env["BENCH_QUEUE"])


def forget_redis_keys(url: str, queue: str) -> None:
    """Removes what the run left in Redis: its queues' bindings and its cache keys."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
    if keys:
        client.delete(*keys)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the large file (1024)")
    parser.add_argument("--small-mib", type=int, default=64, help="the small file (64)")
    parser.add_argument("--rounds", type=int, default=2, help="local publishes and floors (2)")
    parser.add_argument("--s3-rounds", type=int, default=1, help="publishes into S3 (1)")
    parser.add_argument("--no-s3", action="store_true", help="skip the services mode")
    parser.add_argument(
        "--redis-db", type=int, default=15, help="the Redis database for the run's queues (15)"
    )
    parser.add_argument(
        "--steps", action="store_true", help="also time each step of the pipeline in the worker"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    results: dict = {}
    try:
        big, small = work / "sales.csv", work / "sales-small.csv"
        started = time.perf_counter()
        rows = write_csv(big, args.size_mib * MiB, seed=1)
        write_csv(small, args.small_mib * MiB, seed=2)
        say(
            "file",
            f"{big.stat().st_size:,} bytes, {rows:,} rows, 12 columns, generated in "
            f"{time.perf_counter() - started:.1f} s",
        )
        say("mode_local", "embedded: SQLite, folder task queue, objects on disk (temp VAR_DIR)")
        say("parse_floor", "pyarrow.csv.open_csv(path), default options, every batch read")
        run_local(args, work, big, small, results)
        say("columns", results["columns"])
        if not args.no_s3:
            say(
                "mode_s3",
                "services: PostgreSQL (a database of its own), Redis (database "
                f"{args.redis_db}, queues of its own), moto S3 on loopback",
            )
            run_s3(args, work, big, small, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = f"{args.size_mib}mib"
    say("hash_floor_s", results["hash"])
    say("parse_floor_s", results["parse"])
    say("publish_local_s", results["publish_local"])
    say("events_after_publish_local_s", results["events_local"])
    if not args.no_s3:
        say("upload_floor_s", results["upload"])
        say("publish_s3_s", results["publish_s3"])
        say("events_after_publish_s3_s", results["events_s3"])
    small = f"{args.small_mib}mib"
    modes = ["local"] if args.no_s3 else ["local", "s3"]
    for mode in modes:
        for kind, label in (("", "worker"), ("_events", "events_worker")):
            for which, named in (("small", small), ("big", size)):
                value = results[f"{mode}_{which}{kind}_rss"]
                say(f"{label}_peak_rss_mib_{mode}_{named}", f"{value:.0f}")
    hashed = results["publish_local"].best / results["hash"].best
    say("ratio_publish_to_hash_floor", f"{hashed:.2f}")
    for mode in modes:
        events = results[f"{mode}_big_events_rss"] / results[f"{mode}_small_events_rss"]
        say(
            f"ratio_events_worker_peak_rss_{mode}",
            f"{events:.2f} (the worker running the publish's events; goal < 1.20)",
        )
    if not args.no_s3:
        memory_s3 = results["s3_big_rss"] / results["s3_small_rss"]
        say("ratio_worker_peak_rss_s3", f"{memory_s3:.2f} (goal < 1.20)")
        upload = results["publish_s3"].best / results["upload"].best
        say("ratio_publish_s3_to_upload", f"{upload:.2f} (goal <= 1.10)")
    memory_local = results["local_big_rss"] / results["local_small_rss"]
    say("ratio_worker_peak_rss_local", f"{memory_local:.2f} (goal < 1.20)")
    parse = results["publish_local"].best / results["parse"].best
    say("ratio_publish_to_parse_floor", f"{parse:.3f} (goal <= 1.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
