"""The embedded mode, as `make run` starts it: no variable set, SQLite and files under
VAR_DIR, a real Celery worker on the folder queue, no external service at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVICE_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "TEST_RUN_ID",
}

# Run by `manage.py shell` in the embedded mode: the pages, as a signed-in steward.
PAGES_SCRIPT = """
from urllib.parse import urlparse
from django.test import Client

client = Client(HTTP_HOST="127.0.0.1")
signed_in = client.post("/sign-in/", {"username": "steward", "password": "demo-password-1"})
assert signed_in.status_code == 302, signed_in.status_code
found = client.get("/", {"search": "daily", "layer": "gold"}).content.decode()
assert "gold/txn_daily" in found, found
page = client.get("/datasets/scout/gold/txn_daily/").content.decode()
assert 'id="preview-table"' in page and "<h2 id=\\"schema\\">Schema</h2>" in page
link = urlparse(client.get("/datasets/scout/gold/txn_daily/download/")["Location"])
body = b"".join(client.get(f"{link.path}?{link.query}").streaming_content)
print("downloaded", len(body), body[:9].decode())
"""


@contextlib.contextmanager
def embedded_worker(env: dict[str, str], tmp_path: Path, *options: str) -> Iterator[None]:
    """A real `celery -A config worker` (one pool process) in the embedded mode's
    environment `env`, started and ready for the block, stopped after it."""
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "config", "worker", "--concurrency", "1"]
        + ["--loglevel", "INFO", *options],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: "ready." in log.read_text() or worker.poll() is not None,
            timeout=60,
            message="the embedded worker",
        )
        assert worker.poll() is None, log.read_text()
        yield
    finally:
        # A warm shutdown waits for the task in hand (a columnar copy, say); past that,
        # the test is over and nothing is left to wait for.
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


@pytest.fixture
def embedded(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(DEBUG="true", VAR_DIR=str(tmp_path / "var"), DEMO_PASSWORD="demo-password-1")

    def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=check,
        )

    manage.env = env
    return manage


def test_the_embedded_mode_publishes_through_its_own_worker_and_serves_the_pages(
    embedded, tmp_path
):
    embedded("migrate", "--noinput")
    demo = embedded("demo")
    assert "Steward login: steward / demo-password-1" in demo.stdout
    assert (tmp_path / "var" / "db.sqlite3").exists()

    with embedded_worker(embedded.env, tmp_path, "--beat", "--schedule", str(tmp_path / "beat")):
        data = b"date_key,store_id,revenue\n2024-08-12,ST0001,99.5\n2024-08-12,ST0002,12\n"
        source = tmp_path / "txn.csv"
        source.write_bytes(data)
        published = embedded(
            "publish",
            "gold/txn_daily",
            str(source),
            "--org",
            "scout",
            "--wait",
            "--timeout",
            "120",
            "--verbosity",
            "0",
        )
        # The file drops four of the seven columns: a breaking change, so a major version.
        assert "version: 2.0.0" in published.stdout
        sha = hashlib.sha256(data).hexdigest()
        assert f"sha256:  {sha}" in published.stdout

        manifest = json.loads(embedded("manifest", "--org", "scout").stdout)
        assert manifest["total_datasets"] == 9
        assert manifest["datasets"]["gold/txn_daily"]["sha256"] == sha
        key = manifest["datasets"]["gold/txn_daily"]["latest_csv"].lstrip("/")
        assert (tmp_path / "var" / "objects" / key).read_bytes() == data

        out = tmp_path / "fetched.csv"
        embedded("fetch", "gold/txn_daily", "--org", "scout", "-o", str(out))
        assert out.read_bytes() == data

        # The worker also wrote latest.json after commit, through the outbox.
        latest = tmp_path / "var" / "objects" / "scout" / "v1" / "manifests" / "latest.json"
        wait_for(
            lambda: latest.exists() and sha in latest.read_text(), timeout=60, message="latest.json"
        )
        assert (
            json.loads(latest.read_text())["integrity"]["manifest_sha256"]
            == (manifest["integrity"]["manifest_sha256"])
        )

        # The demo's gold rule copies it to the two other regions, folders here; each
        # region's own manifest lists it once its copy is verified.
        for region in ("ap-southeast-1", "eu-west-1"):
            folder = tmp_path / "var" / "regions" / region
            wait_for(
                lambda f=folder: (f / key).exists() and (f / key).read_bytes() == data,
                timeout=90,
                message=f"the copy in {region}",
            )
            region_latest = folder / "scout" / "v1" / "manifests" / "latest.json"
            wait_for(
                lambda m=region_latest: m.exists() and sha in m.read_text(),
                timeout=60,
                message=f"{region}'s manifest",
            )

        # The subscriber pages on SQLite and local files: sign in, search, read, download.
        pages = embedded("shell", "-c", PAGES_SCRIPT)
        assert f"downloaded {len(data)} date_key," in pages.stdout, pages.stderr


def test_the_embedded_mode_refuses_to_start_without_a_secret_key_when_debug_is_off(embedded):
    embedded.env["DEBUG"] = "false"
    result = embedded("check", check=False)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_bad_setting_fails_at_start_up_with_its_name(embedded):
    embedded.env["PUBLISH_JOB_LEASE_SECONDS"] = "soon"
    result = embedded("check", check=False)
    assert result.returncode != 0
    assert "PUBLISH_JOB_LEASE_SECONDS must be a whole number" in result.stderr


def test_make_runs_supervisor_serves_the_app_and_ctrl_c_stops_everything(embedded, tmp_path):
    import socket
    import urllib.request

    embedded("migrate", "--noinput")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**embedded.env, "PORT": str(port)}
    runner = subprocess.Popen(
        [sys.executable, "scripts/run_embedded.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def healthy():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status
        except OSError:
            return None

    try:
        assert wait_for(healthy, timeout=60, message="the web app") == 200
        children = subprocess.run(
            ["pgrep", "-f", f"runserver 127.0.0.1:{port}"], capture_output=True, text=True
        ).stdout.split()
        assert children
        runner.send_signal(signal.SIGINT)
        assert runner.wait(30) == 0
        wait_for(lambda: healthy() is None, timeout=10, message="the web app to stop")
        for pid in children:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text()
            )
    finally:
        if runner.poll() is None:
            runner.kill()
