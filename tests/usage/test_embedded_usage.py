"""Usage in the embedded mode (`make run`): SQLite, no Redis, the spool as the buffer;
a few API downloads show up in the usage API."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import urllib.request

from tests.conftest import wait_for
from tests.test_embedded import ROOT, embedded  # noqa: F401 - the embedded mode's fixture


def _call(url: str, *, token: str | None = None, basic: str | None = None, body=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None)
    request.add_header("User-Agent", "curl/8.5.0")
    if body:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if basic:
        request.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_downloads_in_the_embedded_mode_reach_the_usage_api(embedded):  # noqa: F811
    embedded("migrate", "--noinput")
    embedded("demo")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env={**embedded.env, "PUBLIC_BASE_URL": base},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _healthy(base), timeout=60, message="the web app")
        token = json.loads(
            _call(
                f"{base}/api/v1/tokens/",
                basic="steward:demo-password-1",
                body={"name": "laptop", "scopes": ["read"]},
            )
        )["token"]
        for _ in range(2):
            signed = json.loads(
                _call(f"{base}/api/v1/dataset-proxy?dataset=gold/txn_daily", token=token)
            )
            data = _call(signed["signed_url"])  # the object, served by the app itself
            assert len(data) == signed["dataset_info"]["size_bytes"]

        processed = embedded("usage_ingest").stdout
        assert "ingested: 5 new of 5 read" in processed, processed

        usage = json.loads(
            _call(f"{base}/api/v1/datasets/gold/txn_daily/usage/?window=7d", token=token)
        )
        # Two signed URLs within 30 seconds: one download to COUNTER (a double click).
        assert usage["totals"]["downloads"] == 1
        assert usage["totals"]["api_calls"] == 2
        assert usage["series"][-1]["bytes"] > 2 * len(data)  # the objects and the answers
        dsr = embedded("usage_ingest").stdout
        assert "ingested: 1 new of 1 read" in dsr  # the usage call itself was recorded
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(20)


def _healthy(base: str) -> bool:
    try:
        return urllib.request.urlopen(f"{base}/healthz", timeout=1).status == 200
    except OSError:
        return False
