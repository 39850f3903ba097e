"""Publishing a large CSV end to end through a real worker, against its floors.

One run generates a CSV of --size-mib MiB (twelve columns of mixed types, some nulls)
and a small one of --small-mib MiB, and measures, side by side on those files:

local (the embedded mode: SQLite, the folder task queue and objects on disk, all under
a temporary VAR_DIR, with a real `celery -A config worker`):
    publish       what `manage.py publish --wait` does: stream the file into storage
                  (inspecting it on the way), queue the job, the worker decides and
                  commits, until the job is finished
    parse floor   one pass of pyarrow's streaming CSV reader (`pyarrow.csv.open_csv`,
                  default options) over the file
    hash floor    `openssl dgst -sha256` of the file (printed, not a goal)
s3 (the services mode: a PostgreSQL database created for the run and dropped after,
Redis on a queue of its own, and moto's S3 server on a free loopback port):
    publish       as above, with the objects in that bucket
    upload floor  boto3's `upload_file` of the file into the same bucket

Each publish runs in a freshly started worker (one pool process) whose peak resident
set (VmHWM) is read when the job ends, as is the uploading client's (which inspects
the file as it sends it). The work a publish's events start after the job
(the manifest upload, the columnar copy, lineage) runs next, in a worker of its own on
a queue of its own, and is reported beside the publish, not in it; its peak RSS too.

Every figure is the median of --rounds (at least three) ALTERNATING rounds taken with
tests/benchmarks/measure.py: in each round the large publish runs, then its floor, then
the small publish whose workers' peak RSS is the floor of the memory ratios; so a burst
of load from the machine's other users hits a publish and its floor alike. Each ratio is
the median of the per-round ratios, printed with their spread and flagged when the
spread is too wide to trust. Timings print as they are taken, then a summary, then the
ratios, last. --steps also times each step of the pipeline inside the worker
(publish_worker.py).

--budget measures instead what the S3 goal can hope for on this machine, and nothing
else: in --rounds alternating rounds, the CPU seconds of the upload floor (the uploading
process and moto's server, read from /proc) and of the inspection alone
(`catalog.inspection.inspect_stream` over the same file in a process of its own, from
its first byte to its profile). Together they are the least work a publish into S3 does;
spread perfectly over every core they take (total CPU / cores) seconds, and that over
the floor's wall time is the lowest ratio_publish_s3_to_upload the machine allows. It
also times the floor's CompleteMultipartUpload (moto joins the parts on one core after
the last part, with the uploader waiting): the inspection of bytes fed to it as they are
sent is over by then, so the rest shares the cores before the join, and
budget_lower_bound_with_join is that time plus the join's, over the floor's.

At most two generated files exist at a time (the large and the small one); between
rounds the previous round's published objects (and columnar copies) are removed from
the throwaway storage, and each file gets a new last row, so every publish is new bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
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

from tests.benchmarks.measure import MIN_ROUNDS, Goal, Series, alternate, ratio_line  # noqa: E402
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
    return {
        "events_s": seconds,
        "events_peak_rss_mib": peak,
        "events_sweeps": waited["sweeps"],
        "columnar_key": waited["columnar_key"],
    }


def describe(result: dict) -> str:
    text = (
        f"{result['total_s']:.2f} (upload to staging {result['staging_s']:.2f}, "
        f"queued {result['queued_s']:.2f}, worker {result['worker_s']:.2f}; "
        f"worker peak RSS {result['peak_rss_mib']:.0f} MiB, uploading client's "
        f"{result['client_peak_rss_mib']:.0f} MiB)"
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


# The process id of each running moto server, by endpoint (for --budget's CPU seconds).
MOTO_PIDS: dict[str, int] = {}


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
        MOTO_PIDS[endpoint] = proc.pid
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


# --- the budget -----------------------------------------------------------------------

_INSPECT_ALONE = """
import resource, sys
from django.conf import settings
settings.configure(MAX_COLUMNS=100000)
from catalog.inspection import inspect_stream
def cpu():
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime
started = cpu()
with open(sys.argv[1], "rb") as stream:
    inspect_stream(stream, format="csv")
print(cpu() - started)
"""


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


class JoinTimer:
    """Times the CompleteMultipartUpload requests of an S3 client, and the CPU seconds
    moto spends meanwhile: the join of the parts, which starts only after the last part
    and during which the uploading process waits."""

    def __init__(self, s3, moto: int) -> None:
        self.moto = moto
        self.seconds, self.moto_cpu_s = 0.0, 0.0
        self._started: tuple[float, float] | None = None
        s3.meta.events.register("before-call.s3.CompleteMultipartUpload", self._before)
        s3.meta.events.register("after-call.s3.CompleteMultipartUpload", self._after)

    def reset(self) -> None:
        self.seconds, self.moto_cpu_s = 0.0, 0.0

    def _before(self, **_) -> None:
        self._started = (time.perf_counter(), process_cpu_s(self.moto))

    def _after(self, **_) -> None:
        wall, cpu = self._started
        self.seconds += time.perf_counter() - wall
        self.moto_cpu_s += process_cpu_s(self.moto) - cpu


def run_budget(args, work: Path, big: Path) -> None:
    """The CPU seconds of the upload floor and of the inspection alone (see --budget)."""
    with s3_server(work / "moto.log") as endpoint:
        s3, moto = s3_client(endpoint), MOTO_PIDS[endpoint]
        floor_wall, client, server, inspection = Series(), Series(), Series(), Series()
        join, join_cpu = Series(), Series()
        joins = JoinTimer(s3, moto)

        def upload_floor() -> float:
            key = f"baseline/{uuid.uuid4().hex}.csv"
            own, moto_before = own_cpu_s(), process_cpu_s(moto)
            joins.reset()
            seconds = floor_wall.add(timed(lambda: s3.upload_file(str(big), _BUCKET, key)))
            client.add(own_cpu_s() - own)
            server.add(process_cpu_s(moto) - moto_before)
            join.add(joins.seconds)
            join_cpu.add(joins.moto_cpu_s)
            s3.delete_object(Bucket=_BUCKET, Key=key)
            return seconds

        def inspection_alone() -> float:
            done = subprocess.run(
                [sys.executable, "-c", _INSPECT_ALONE, str(big)],
                cwd=ROOT,
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
            return inspection.add(float(done.stdout.strip().splitlines()[-1]))

        alternate(
            {"upload_floor_s": upload_floor, "inspection_alone_cpu_s": inspection_alone},
            rounds=args.rounds,
            report=lambda line: print(line, flush=True),
        )
    cores = len(os.sched_getaffinity(0))
    floor_cpu = client.median + server.median
    total = floor_cpu + inspection.median
    say("budget_floor_wall_s", floor_wall)
    say("budget_floor_client_cpu_s", client)
    say("budget_floor_moto_cpu_s", server)
    say("budget_floor_join_s", join)
    say("budget_floor_join_moto_cpu_s", join_cpu)
    say("budget_inspection_cpu_s", inspection)
    say(
        "budget_lower_bound",
        f"({floor_cpu:.2f} floor + {inspection.median:.2f} inspection) CPU s / {cores} cores "
        f"= {total / cores:.2f} s, against the floor's {floor_wall.median:.2f} s: "
        f"ratio_publish_s3_to_upload >= {total / cores / floor_wall.median:.2f} here",
    )
    # The join of the parts runs on one core after the last part, while the uploader
    # waits; an inspection fed the bytes as they are sent (memory flat) is over by then,
    # so everything else shares the cores before it.
    before_join = (total - join_cpu.median) / cores
    with_join = before_join + join.median
    say(
        "budget_lower_bound_with_join",
        f"({total:.2f} - {join_cpu.median:.2f} of the join) CPU s / {cores} cores = "
        f"{before_join:.2f} s before the join, + the join's {join.median:.2f} s = "
        f"{with_join:.2f} s, against the floor's {floor_wall.median:.2f} s: "
        f"ratio_publish_s3_to_upload >= {with_join / floor_wall.median:.2f} here",
    )


# --- the run --------------------------------------------------------------------------


class Publishes:
    """Publishes a file once per call, in a fresh worker, and keeps what each publish
    measured beside its time: the workers' peak RSS, the events' time. Only the last
    publish's objects are kept in storage."""

    def __init__(self, env, path: Path, work: Path, label: str, remove) -> None:
        self.env, self.path, self.work, self.label, self.remove = env, path, work, label, remove
        self.rss, self.events_rss, self.events = Series(), Series(), Series()
        self.client_rss = Series()
        self.first: dict = {}
        self._kept: list[str] = []
        self._n = 0

    def __call__(self) -> float:
        self._n += 1
        log = self.work / f"worker-{self.label}-{self._n}.log"
        result = publish_in_fresh_worker(self.env, self.path, log)
        say(f"  {self.label} publish {self._n}", describe(result))
        self.first = self.first or result
        self.rss.add(result["peak_rss_mib"])
        self.client_rss.add(result["client_peak_rss_mib"])
        self.events_rss.add(result["events_peak_rss_mib"])
        self.events.add(result["events_s"])
        for key in self._kept:
            self.remove(key)
        self._kept = [key for key in (result.get("key"), result.get("columnar_key")) if key]
        change_last_row(self.path)
        return result["total_s"]


def run_mode(mode: str, args, work: Path, big: Path, small: Path, env, floors, remove) -> dict:
    """The alternating rounds of one mode: large publish, its floors, small publish."""
    large = Publishes(env, big, work, f"{mode}-{args.size_mib}mib", remove)
    little = Publishes(env, small, work, f"{mode}-{args.small_mib}mib", remove)
    # A first small publish warms the mode up (imports, the database, the bucket).
    little()
    little.rss, little.events_rss, little.events = Series(), Series(), Series()
    little.client_rss = Series()
    measures = {f"publish_{mode}_s": large, **floors, f"publish_{mode}_small_s": little}
    taken = alternate(measures, rounds=args.rounds, report=lambda line: print(line, flush=True))
    return {"taken": taken, "large": large, "small": little}


def run_local(args, work: Path, big: Path, small: Path) -> dict:
    var_dir = work / "embedded"
    env = product_env(var_dir, steps=args.steps)
    manage(env, "migrate", "--noinput")
    client(env, "setup")

    def remove(key: str) -> None:
        (var_dir / "objects" / key).unlink(missing_ok=True)

    floors = {"parse_floor_s": lambda: parse_floor(big), "hash_floor_s": lambda: hash_floor(big)}
    try:
        return run_mode("local", args, work, big, small, env, floors, remove)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def run_s3(args, work: Path, big: Path, small: Path) -> dict:
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

        def remove(key: str) -> None:
            s3.delete_object(Bucket=_BUCKET, Key=key)

        def upload_floor() -> float:
            key = f"baseline/{uuid.uuid4().hex}.csv"
            seconds = timed(lambda: s3.upload_file(str(big), _BUCKET, key))
            remove(key)
            return seconds

        try:
            return run_mode(
                "s3", args, work, big, small, env, {"upload_floor_s": upload_floor}, remove
            )
        finally:
            forget_redis_keys(redis_url, env["BENCH_QUEUE"])


def forget_redis_keys(url: str, queue: str) -> None:
    """Removes what the run left in Redis: its queues' bindings and its cache keys."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
    if keys:
        client.delete(*keys)


def report(mode: str, run: dict, args) -> dict[str, str]:
    """Prints the mode's summary; returns its ratio lines by name, for the end."""
    taken, large, small = run["taken"], run["large"], run["small"]
    for name, series in taken.items():
        say(name, series)
    say(f"events_after_publish_{mode}_s", large.events)
    for label, publishes in ((f"{args.size_mib}mib", large), (f"{args.small_mib}mib", small)):
        say(f"worker_peak_rss_mib_{mode}_{label}", publishes.rss)
        say(f"upload_peak_rss_mib_{mode}_{label}", publishes.client_rss)
        say(f"events_worker_peak_rss_mib_{mode}_{label}", publishes.events_rss)
    below = Goal.at_most(1.2)
    lines = {
        f"ratio_worker_peak_rss_{mode}": ratio_line(
            f"ratio_worker_peak_rss_{mode}", large.rss, small.rss, goal=below
        ),
        # Since the file is inspected while it uploads, the process that uploads holds
        # the memory the worker used to: it must stay flat too.
        f"ratio_upload_peak_rss_{mode}": ratio_line(
            f"ratio_upload_peak_rss_{mode}", large.client_rss, small.client_rss, goal=below
        ),
        f"ratio_events_worker_peak_rss_{mode}": ratio_line(
            f"ratio_events_worker_peak_rss_{mode}", large.events_rss, small.events_rss, goal=below
        ),
    }
    if mode == "local":
        lines["ratio_publish_to_hash_floor"] = ratio_line(
            "ratio_publish_to_hash_floor", taken["publish_local_s"], taken["hash_floor_s"]
        )
        lines["ratio_publish_to_parse_floor"] = ratio_line(
            "ratio_publish_to_parse_floor",
            taken["publish_local_s"],
            taken["parse_floor_s"],
            goal=Goal.at_most(1.5),
        )
    else:
        lines["ratio_publish_s3_to_upload"] = ratio_line(
            "ratio_publish_s3_to_upload",
            taken["publish_s3_s"],
            taken["upload_floor_s"],
            goal=Goal.at_most(1.1),
        )
    return lines


# The ratios, last, in this order; the headline of the issue (S3 publish) at the end.
_RATIO_ORDER = (
    "ratio_publish_to_hash_floor",
    "ratio_worker_peak_rss_local",
    "ratio_worker_peak_rss_s3",
    "ratio_upload_peak_rss_local",
    "ratio_upload_peak_rss_s3",
    "ratio_events_worker_peak_rss_local",
    "ratio_events_worker_peak_rss_s3",
    "ratio_publish_to_parse_floor",
    "ratio_publish_s3_to_upload",
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the large file (1024)")
    parser.add_argument("--small-mib", type=int, default=64, help="the small file (64)")
    parser.add_argument(
        "--rounds", type=int, default=MIN_ROUNDS, help=f"alternating rounds per mode ({MIN_ROUNDS})"
    )
    parser.add_argument("--no-s3", action="store_true", help="skip the services mode")
    parser.add_argument("--no-local", action="store_true", help="skip the embedded mode")
    parser.add_argument(
        "--redis-db", type=int, default=15, help="the Redis database for the run's queues (15)"
    )
    parser.add_argument(
        "--steps", action="store_true", help="also time each step of the pipeline in the worker"
    )
    parser.add_argument(
        "--budget",
        action="store_true",
        help="only measure the CPU seconds of the upload floor and of the inspection alone, "
        "and the lowest S3 ratio they allow on this machine",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    runs: dict[str, dict] = {}
    try:
        big, small = work / "sales.csv", work / "sales-small.csv"
        started = time.perf_counter()
        rows = write_csv(big, args.size_mib * MiB, seed=1)
        write_csv(small, args.small_mib * MiB, seed=2)
        say(
            "file",
            f"{big.stat().st_size:,} bytes, {rows:,} rows, 12 columns, generated in "
            f"{time.perf_counter() - started:.1f} s; small file {small.stat().st_size:,} bytes",
        )
        if args.budget:
            say("rounds", f"{args.rounds} alternating (upload floor, inspection alone)")
            run_budget(args, work, big)
            return 0
        say("rounds", f"{args.rounds} alternating (publish, floor, small publish)")
        if not args.no_local:
            say("mode_local", "embedded: SQLite, folder task queue, objects on disk (temp VAR_DIR)")
            say("parse_floor", "pyarrow.csv.open_csv(path), default options, every batch read")
            runs["local"] = run_local(args, work, big, small)
            schema = runs["local"]["small"].first["schema"]
            say("columns", ", ".join(f"{c['name']} {c['type']}" for c in schema))
        if not args.no_s3:
            say(
                "mode_s3",
                "services: PostgreSQL (a database of its own), Redis (database "
                f"{args.redis_db}, queues of its own), moto S3 on loopback",
            )
            runs["s3"] = run_s3(args, work, big, small)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines: dict[str, str] = {}
    for mode, run in runs.items():
        lines.update(report(mode, run, args))
    for name in _RATIO_ORDER:
        if name in lines:
            print(lines[name], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
