"""The catalog generation lives in Redis, but Redis never fails a commit or a read: a
publish commits while it is down, reads answer from the database, and a bump lost to an
outage is made up by the outbox sweeper."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.core.cache import cache
from django.test import RequestFactory

from catalog.api import generations
from catalog.api.generations import GENERATION_KEY, cached_read, cached_write
from catalog.services import dataset_update
from catalog.tasks import sweep_events
from versioning.models import DatasetVersion, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)

CSV = b"day,store,revenue\n2024-08-10,ST1,10.5\n2024-08-10,ST2,7\n"


def test_a_publish_commits_and_reads_answer_while_the_cache_is_down(dataset, publish, cache_redis):
    assert publish(dataset, CSV).status == JobStatus.SUCCEEDED
    cache_redis.stop()

    started = time.monotonic()
    job = publish(dataset, CSV + b"2024-08-11,ST3,1\n")
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert DatasetVersion.objects.get(is_current=True).pk == job.version_id
    assert time.monotonic() - started < 10

    request = RequestFactory().get("/api/v1/datasets/")
    assert cached_read("api-list:x", request) == (None, None)  # answer from the database
    cached_write("api-list:x", b"[]", generation=None, seconds=60)  # and keep nothing


def test_a_bump_lost_to_a_cache_outage_is_made_up_by_the_outbox_sweeper(
    dataset, system, cache_redis
):
    sweep_events()  # settled: the generation knows every change so far
    before = cache.get(GENERATION_KEY)
    assert before is not None

    os.kill(cache_redis.proc.pid, signal.SIGSTOP)  # Redis hangs, keeping its data
    try:
        dataset_update(dataset=dataset, actor=system, title="Daily transactions, v2")
    finally:
        os.kill(cache_redis.proc.pid, signal.SIGCONT)
    generations._breaker.until = 0.0
    assert cache.get(GENERATION_KEY) == before  # the bump was lost

    sweep_events()
    assert cache.get(GENERATION_KEY) != before
    moved = cache.get(GENERATION_KEY)
    sweep_events()  # nothing new since: the generation stays
    assert cache.get(GENERATION_KEY) == moved


def test_a_dataset_change_through_its_service_moves_the_generation(dataset, system, cache_redis):
    sweep_events()
    before = cache.get(GENERATION_KEY)
    dataset_update(dataset=dataset, actor=system, visibility="public")
    assert cache.get(GENERATION_KEY) != before
