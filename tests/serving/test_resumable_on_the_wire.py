"""A resumable upload over real sockets: the API on gunicorn, the parts PUT four at a
time by `requests` to the presigned URLs it hands out (moto's S3), then completed and
published; and with a real worker joining the parts after complete."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rest_framework.test import APIClient

from tests.api.test_resumable_uploads import BIG, BIG_SHA, MIB
from tests.conftest import wait_for
from versioning.models import DatasetVersion, JobStatus
from versioning.services import publish_job_run
from versioning.services.resumable import resumable_upload_join

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.s3]


def test_parts_sent_in_parallel_over_the_wire_are_published(start_server, token, monkeypatch):
    monkeypatch.setenv("RESUMABLE_PART_BYTES", str(5 * MIB))  # the server's part size
    server = start_server("gunicorn")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    base = f"{server.url}/api/v1"
    begun = session.post(
        f"{base}/datasets/gold/txn_daily/uploads/",
        json={"filename": "day.csv", "size": len(BIG), "sha256": BIG_SHA},
        timeout=30,
    )
    assert begun.status_code == 201, begun.text
    upload = begun.json()
    assert upload["part_count"] == 3
    parts = session.post(f"{server.url}{upload['part_urls_url']}", json={}, timeout=30).json()

    def put(part: dict) -> str:
        assert part["url"].startswith(os.environ["S3_ENDPOINT_URL"])
        start = (part["part_number"] - 1) * upload["part_size"]
        answer = requests.put(part["url"], data=BIG[start : start + part["size"]], timeout=60)
        assert answer.status_code == 200, answer.text[:500]
        return answer.headers["ETag"]

    with ThreadPoolExecutor(4) as pool:
        etags = list(pool.map(put, parts["parts"]))
    state = session.get(f"{server.url}{upload['url']}", timeout=30).json()
    assert [p["etag"] for p in state["parts"]] == etags and state["missing_parts"] == []

    done = session.post(f"{server.url}{upload['complete_url']}", timeout=120)
    assert done.status_code == 202, done.text
    resumable_upload_join(upload_id=upload["id"])  # the worker's step, here
    state = session.get(f"{server.url}{upload['url']}", timeout=30).json()
    assert state["status"] == "completed", state
    job = publish_job_run(job_id=state["job_url"].rstrip("/").rsplit("/", 1)[-1])
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = DatasetVersion.objects.get(is_current=True)
    assert version.sha256 == BIG_SHA == hashlib.sha256(BIG).hexdigest()
    assert version.size_bytes == len(BIG) > 10 * MIB


@pytest.mark.worker
def test_a_real_worker_joins_the_parts_and_publishes_after_complete(token, start_worker, settings):
    settings.RESUMABLE_PART_BYTES = 5 * MIB
    start_worker()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    upload = client.post(
        "/api/v1/datasets/gold/txn_daily/uploads/",
        {"filename": "day.csv", "size": len(BIG), "sha256": BIG_SHA},
        format="json",
    ).json()
    parts = client.post(upload["part_urls_url"], {}, format="json").json()["parts"]
    for part in parts:
        start = (part["part_number"] - 1) * upload["part_size"]
        answer = requests.put(part["url"], data=BIG[start : start + part["size"]], timeout=60)
        assert answer.status_code == 200
    assert client.post(upload["complete_url"], format="json").status_code == 202
    state = wait_for(
        lambda: (s := client.get(upload["url"]).json())["status"] == "completed" and s,
        timeout=60,
        message="the worker to join the parts",
    )
    job = wait_for(
        lambda: (j := client.get(state["job_url"]).json())["status"] == "succeeded" and j,
        timeout=60,
        message="the worker to publish",
    )
    assert job["outcome"] == "published"
    assert DatasetVersion.objects.get(is_current=True).sha256 == BIG_SHA
