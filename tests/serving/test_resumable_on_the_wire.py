"""A resumable upload over real sockets: the API on gunicorn, the parts PUT four at a
time by `requests` to the presigned URLs it hands out (moto's S3), then completed and
published."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.api.test_resumable_uploads import BIG, BIG_SHA, MIB
from versioning.models import DatasetVersion, JobStatus
from versioning.services import publish_job_run

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
    job = publish_job_run(job_id=done.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = DatasetVersion.objects.get(is_current=True)
    assert version.sha256 == BIG_SHA == hashlib.sha256(BIG).hexdigest()
    assert version.size_bytes == len(BIG) > 10 * MIB
