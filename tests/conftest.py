"""The shared cast and the real parts the tests run against.

- PostgreSQL and Redis on localhost (DATABASE_URL, REDIS_URL; see tests/settings.py);
- an S3 server on loopback: moto's standalone server, started once per session;
- real Celery worker processes, started per test by `start_worker`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

from catalog.audit import Actor
from catalog.models import Organization, Role

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 30,
    interval: float = 0.1,
    message: str = "condition",
):
    """Polls until `condition()` is truthy and returns it; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {message}.")
        time.sleep(interval)


def in_forked_child(work: Callable[[], str]) -> str:
    """What `work()` returns when run in a forked child of this process, which reports
    it through a pipe and exits at once (closing nothing the parent still uses)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.write(write, work().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = pipe.read()
    os.waitpid(child, 0)
    return reported


EMBEDDED = os.environ.get("TEST_MODE", "services") == "embedded"


def pytest_collection_modifyitems(config, items):
    """In the embedded mode only the tests marked for both modes run (and of those, none
    that needs the S3 server or a worker on Redis)."""
    if not EMBEDDED:
        return
    kept, dropped = [], []
    for item in items:
        markers = {mark.name for mark in item.iter_markers()}
        runs = "both_modes" in markers and not markers & {"s3", "worker"}
        (kept if runs else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def s3_server():
    if EMBEDDED:
        yield None
        return
    endpoint = os.environ["S3_ENDPOINT_URL"]
    port = urlparse(endpoint).port
    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
    log = open(Path(settings.VAR_DIR) / "moto.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )

    def up():
        try:
            client.list_buckets()
        except Exception:
            return False
        return True

    wait_for(up, timeout=30, message="the S3 server")
    client.create_bucket(Bucket=os.environ["S3_BUCKET"])
    yield client
    proc.terminate()
    proc.wait(10)
    log.close()


def _objects_dir() -> Path:
    return Path(settings.STORAGES["datasets"]["OPTIONS"]["location"])


@pytest.fixture(autouse=True)
def empty_bucket(s3_server):
    """Each test starts with an empty bucket, with no unfinished multipart upload (in the
    embedded mode, an empty folder)."""
    yield
    if s3_server is None:
        shutil.rmtree(_objects_dir(), ignore_errors=True)
        return
    bucket = os.environ["S3_BUCKET"]
    for upload in s3_server.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3_server.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    paginator = s3_server.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3_server.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    # Uploads that a killed worker or a cut connection left unfinished go too, so a test
    # that counts them sees only its own.
    for upload in s3_server.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3_server.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )


@pytest.fixture
def bucket_keys(s3_server):
    def keys(prefix: str = "") -> list[str]:
        if s3_server is None:
            root = _objects_dir()
            found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            return sorted(key for key in found if key.startswith(prefix))
        response = s3_server.list_objects_v2(Bucket=os.environ["S3_BUCKET"], Prefix=prefix)
        return sorted(o["Key"] for o in response.get("Contents", []))

    return keys


class S3Calls:
    """This process's S3 requests by operation name, in order, seen through botocore's
    own event hooks on the shared client."""

    def __init__(self) -> None:
        from catalog.storage import get_object_store

        self.sent: list[str] = []
        self._client = get_object_store().client
        self._client.meta.events.register("before-call.s3", self._seen)

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.sent)

    def _seen(self, model, **_) -> None:
        self.sent.append(model.name)

    def reset(self) -> None:
        self.sent.clear()

    def close(self) -> None:
        self._client.meta.events.unregister("before-call.s3", self._seen)


@pytest.fixture
def s3_calls(s3_server):
    """The S3 requests this process sends during the test (None in the embedded mode)."""
    if s3_server is None:
        yield None
        return
    calls = S3Calls()
    yield calls
    calls.close()


@pytest.fixture
def stray_uploads(bucket_keys):
    """The objects uploads left that no version refers to (in staging, or at the key of
    a version not published), for checking that a refused upload left nothing."""

    def stray(org: str = "acme") -> list[str]:
        from versioning.models import DatasetVersion

        published = set(DatasetVersion.objects.values_list("key", flat=True))
        stored = bucket_keys(f"{org}/staging/") + bucket_keys(f"{org}/v1/")
        manifests = f"{org}/v1/manifests/"
        return [k for k in stored if k not in published and not k.startswith(manifests)]

    return stray


@pytest.fixture
def flaky_storage(settings):
    """Routes this process's storage calls through a FlakyProxy to the S3 server."""
    from tests.faults import FlakyProxy

    proxy = FlakyProxy(urlparse(os.environ["S3_ENDPOINT_URL"]).port)
    options = {**settings.STORAGES["datasets"]["OPTIONS"], "endpoint_url": proxy.url}
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": {**settings.STORAGES["datasets"], "OPTIONS": options},
    }
    yield proxy
    proxy.close()


# --- The cast -------------------------------------------------------------------------


@pytest.fixture
def system() -> Actor:
    return Actor.system(via="command")


@pytest.fixture
def acme(db, system) -> Organization:
    from catalog.services import organization_create

    return organization_create(slug="acme", name="Acme", actor=system)


@pytest.fixture
def globex(db, system) -> Organization:
    from catalog.services import organization_create

    return organization_create(slug="globex", name="Globex", actor=system)


def _member(django_user_model, org, username, role, system):
    from catalog.services import membership_set

    user = django_user_model.objects.create_user(
        username=username, password="pw-" + username, is_staff=True
    )
    membership_set(organization=org, user=user, role=role, actor=system)
    return user


@pytest.fixture
def steward(django_user_model, acme, system):
    return _member(django_user_model, acme, "stella", Role.STEWARD, system)


@pytest.fixture
def viewer(django_user_model, acme, system):
    return _member(django_user_model, acme, "victor", Role.VIEWER, system)


@pytest.fixture
def outsider(django_user_model, globex, system):
    """A steward of another organisation."""
    return _member(django_user_model, globex, "oscar", Role.STEWARD, system)


@pytest.fixture
def dataset(acme, system):
    from catalog.services import dataset_create

    return dataset_create(
        organization=acme,
        layer="gold",
        name="txn_daily",
        actor=system,
        title="Daily transactions",
        description="Daily transaction aggregates",
    )


@pytest.fixture
def publish(system):
    """Publishes bytes through the real pipeline in this process; returns the job."""
    from versioning.models import JobSource, JobStatus, PublishJob
    from versioning.services import publish_job_create, publish_job_run

    def run(
        dataset,
        data: bytes,
        *,
        version: str = "",
        filename: str = "data.csv",
        actor: Actor | None = None,
    ):
        job = publish_job_create(
            dataset=dataset,
            stream=io.BytesIO(data),
            filename=filename,
            actor=actor or system,
            source=JobSource.COMMAND,
            requested_version=version,
        )
        publish_job_run(job_id=job.pk)
        # The job is also handed to the queue when it is created: a worker the test
        # started may claim it first, and then this process leaves it alone. Its end,
        # wherever it ran, is the answer.
        wait_for(
            lambda: (
                not PublishJob.objects.filter(
                    pk=job.pk, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
                ).exists()
            ),
            message=f"publish job {job.pk} to finish",
        )
        job.refresh_from_db()
        return job

    return run


# --- Real workers ---------------------------------------------------------------------


class Worker:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc, self.log = proc, log

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def start_worker(tmp_path):
    """Starts real `celery worker` processes on the test database; stops them after."""
    workers: list[Worker] = []

    def start(*, env: dict | None = None, concurrency: int = 1) -> Worker:
        log = tmp_path / f"worker-{len(workers)}.log"
        proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"test{len(workers)}@%h",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": _test_database_url(),
                **(env or {}),
            },
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(proc, log)
        workers.append(worker)
        wait_for(
            lambda: "ready." in log.read_text() or proc.poll() is not None,
            timeout=60,
            message="the worker to start",
        )
        assert proc.poll() is None, log.read_text()
        return worker

    yield start
    for worker in workers:
        worker.stop()


# --- Headless Chromium (Debian's package), driven by Playwright, for the pages ---------
# One session-wide browser for every folder: Playwright's sync API allows one instance
# per process, so no other conftest may define its own.

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    import shutil

    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is needed at {CHROMIUM} (apt-get install chromium)")
    # Playwright's sync API runs an event loop; Django must still allow its own calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def cache_redis(settings):
    """The shared cache on a redis-server of this test's own: its command counts are
    this test's alone, and the test can stop it."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed for this test (apt-get install redis-server)")
    from catalog.api import generations
    from tests.versioning.test_faults import PrivateRedis

    redis = PrivateRedis()
    redis.start()
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": redis.url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    generations._breaker.until = 0.0
    yield redis
    redis.stop()
    generations._breaker.until = 0.0
