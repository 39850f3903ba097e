"""Following a publish job with `?wait=N`: the answer is held until the job finishes."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from tests.api.conftest import CSV, error_of, multipart, post_multipart
from versioning.models import JobStatus, PublishJob
from versioning.services import publish_job_run

CSV_2 = CSV + b"2024-08-12,ST0003,1.5,true\n"


@pytest.fixture(autouse=True)
def uploads_go_to_a_worker(settings):
    """The jobs here are followed while a worker runs them, so the request that uploads
    them does not publish them itself (tests/api/test_publish_now.py covers that)."""
    settings.PUBLISH_INLINE_MAX_BYTES = 0


def _upload(client) -> dict:
    response = post_multipart(client, multipart([("file", "day.csv", CSV_2)]))
    assert response.status_code == 202, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_a_waiting_request_answers_as_soon_as_a_worker_finishes_the_job(
    published, steward, as_user
):
    client = as_user(steward)
    job = _upload(client)

    def worker() -> None:
        time.sleep(0.5)
        try:
            publish_job_run(job_id=job["id"])
        finally:
            connection.close()

    running = threading.Thread(target=worker)
    started = time.monotonic()
    running.start()
    try:
        answer = client.get(f"{job['url']}?wait=20")
    finally:
        running.join(30)
    waited = time.monotonic() - started
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "succeeded", body["message"]
    assert body["version"] == "1.0.1"
    assert 0.5 <= waited < 10


@pytest.mark.django_db
def test_a_wait_on_a_job_still_queued_answers_it_queued_after_the_wait(published, steward, as_user):
    client = as_user(steward)
    job = _upload(client)
    started = time.monotonic()
    answer = client.get(f"{job['url']}?wait=1")
    waited = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json()["status"] == "queued"
    assert 0.9 <= waited < 5


@pytest.mark.django_db
@pytest.mark.both_modes
def test_a_wait_on_a_finished_job_answers_at_once(published, steward, as_user):
    job = PublishJob.objects.get(status=JobStatus.SUCCEEDED)
    started = time.monotonic()
    answer = as_user(steward).get(f"/api/v1/publish-jobs/{job.pk}/?wait=30")
    assert answer.status_code == 200
    assert answer.json()["status"] == "succeeded"
    assert time.monotonic() - started < 2


@pytest.mark.django_db
@pytest.mark.both_modes
def test_an_outsider_waiting_on_a_job_gets_404_at_once(published, outsider, as_user):
    job = PublishJob.objects.get()
    PublishJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    started = time.monotonic()
    assert as_user(outsider).get(f"/api/v1/publish-jobs/{job.pk}/?wait=30").status_code == 404
    assert time.monotonic() - started < 2


@pytest.mark.django_db
@pytest.mark.both_modes
@pytest.mark.parametrize("wait", ["31", "-1", "soon", "1.5"])
def test_a_bad_wait_is_refused_with_400(published, steward, as_user, wait):
    job = PublishJob.objects.get()
    answer = as_user(steward).get(f"/api/v1/publish-jobs/{job.pk}/?wait={wait}")
    assert answer.status_code == 400
    error = error_of(answer)
    assert "wait" in error["details"], error


def _finish_later(job_id, delay: float, finish) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        try:
            finish(job_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_waiting_request_is_woken_by_the_worker_not_by_reading_the_job_again_and_again(
    published, steward, as_user
):
    from django.test.utils import CaptureQueriesContext

    client = as_user(steward)
    job = _upload(client)
    finisher = _finish_later(job["id"], 2.5, lambda pk: publish_job_run(job_id=pk))
    try:
        with CaptureQueriesContext(connection) as queries:
            answer = client.get(f"{job['url']}?wait=20")
    finally:
        finisher.join(30)
    assert answer.json()["status"] == "succeeded"
    status_reads = [q for q in queries.captured_queries if "publish_job" in q["sql"]]
    # On arrival, once a second while nothing is said, once when woken, then the answer:
    # polling every 100 ms would have read it 25 times.
    assert len(status_reads) <= 6, [q["sql"] for q in status_reads]


@pytest.mark.django_db(transaction=True)
def test_a_job_finished_without_a_wake_up_is_still_seen_within_a_second_or_so(
    published, steward, as_user
):
    client = as_user(steward)
    job = _upload(client)

    def finish_quietly(pk) -> None:
        # A change the worker's wake-up never announces (as if Redis lost the message).
        PublishJob.objects.filter(pk=pk).update(status=JobStatus.FAILED, message="Gone.")

    finisher = _finish_later(job["id"], 0.5, finish_quietly)
    started = time.monotonic()
    try:
        answer = client.get(f"{job['url']}?wait=20")
    finally:
        finisher.join(30)
    assert answer.json()["status"] == "failed"
    assert time.monotonic() - started < 3
