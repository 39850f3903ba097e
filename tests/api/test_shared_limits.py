"""The signed-URL limit is one budget per user across web processes: two gunicorn
servers on the same database and Redis, each of which has already seen the token (so
each reads it with the limit in one round trip), together grant exactly the limit."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from tests.conftest import ROOT, _test_database_url, wait_for
from tests.serving.conftest import _command, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.s3]

LIMIT = 3
DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"


@pytest.fixture
def two_servers(tmp_path):
    procs, urls = [], []
    for n in range(2):
        port = free_port()
        log = tmp_path / f"gunicorn-{n}.log"
        proc = subprocess.Popen(
            _command("gunicorn", port),
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": _test_database_url(),
                "API_SIGNED_URL_RATE": f"{LIMIT}/min",
                "PYTHONUNBUFFERED": "1",
            },
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up(proc=proc, url=url, log=log) -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"gunicorn stopped:\n{log.read_text()}")
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=60, message="gunicorn to answer")
        urls.append(url)
    yield urls
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_two_web_processes_share_one_signed_url_budget(two_servers, published, viewer, make_token):
    raw = make_token(viewer, scopes=["read"])
    auth = {"Authorization": f"Bearer {raw}"}
    for url in two_servers:  # each process learns whose token it is
        assert requests.get(f"{url}/api/v1/manifest/", headers=auth, timeout=10).status_code == 200
    if time.time() % 60 > 50:  # all requests in one minute's window
        wait_for(lambda: time.time() % 60 < 5, timeout=15, message="a new window")

    statuses = [
        requests.get(f"{two_servers[n % 2]}{DOWNLOAD}", headers=auth, timeout=10).status_code
        for n in range(4 * LIMIT)
    ]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == 3 * LIMIT, statuses
    assert statuses[:LIMIT] == [200] * LIMIT
