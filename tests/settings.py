"""Test settings: the services mode (PostgreSQL, Redis, S3 on loopback) with short
leases, so that the fault tests see a dead worker's job taken over within seconds.

With `TEST_MODE=embedded` the same tests run in the embedded mode instead: SQLite, the
file cache, the folder queue and local files under VAR_DIR, nothing external. `make
test` runs the tests marked `both_modes` that way too (the API's filters, rows,
downloads and publishing, and the pages), so the two modes cannot drift apart.

Worker processes started by the tests use this module too, so everything they need is
read from the environment that the test session sets up (see conftest.py).
"""

import os
import socket


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# One id per test session, inherited by the worker processes it starts: test runs side by
# side on one machine get their own test database and task queue.
RUN_ID = os.environ.setdefault("TEST_RUN_ID", str(os.getpid()))
EMBEDDED = os.environ.get("TEST_MODE", "services") == "embedded"
if EMBEDDED:
    for name in ("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "S3_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DEBUG", "false")
else:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dataset_publisher")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("S3_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    os.environ.setdefault("S3_BUCKET", "datasets-test")
    os.environ.setdefault("S3_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("S3_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("SECRET_KEY", "tests-only-" + "x" * 50)
os.environ.setdefault("VAR_DIR", f"/tmp/dataset-publisher-tests-{RUN_ID}")
os.environ.setdefault("PUBLISH_JOB_LEASE_SECONDS", "6")
os.environ.setdefault("PUBLISH_JOB_REDISPATCH_SECONDS", "2")
os.environ.setdefault("OUTBOX_LEASE_SECONDS", "3")
# Every queue (publish, events, ...) gets this run's own name; worker processes inherit it.
os.environ.setdefault("CELERY_QUEUE_PREFIX", f"tests-{RUN_ID}-")
# Usage events of this run (and its workers) in a Redis list of their own.
os.environ.setdefault("USAGE_BUFFER_KEY", f"usage-tests-{RUN_ID}:events")
os.environ.setdefault("USAGE_INGEST_LEASE_SECONDS", "3")
# The tests' files are a few hundred bytes: each gets its columnar copy, as a large file
# does (tests/api/test_rows_and_manifest.py sets the threshold where it tests it).
os.environ.setdefault("COLUMNAR_COPY_MIN_BYTES", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")

from config.settings import *  # noqa: E402,F403

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
if not EMBEDDED:
    DATABASES["default"]["TEST"] = {"NAME": f"test_dataset_publisher_{RUN_ID}"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INSTALLED_APPS = [*INSTALLED_APPS, "tests.probe"]  # noqa: F405
