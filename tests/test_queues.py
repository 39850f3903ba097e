"""Each kind of work has its own queue, so a large publish never delays an event
delivery or a notice; a worker started without -Q serves them all."""

from __future__ import annotations

import pytest
from django.conf import settings

from config.celery import app as celery_app


def queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("versioning.run_publish_job", "publish"),
        ("versioning.sweep_publish_jobs", "publish"),
        ("catalog.deliver_events", "events"),
        ("catalog.sweep_events", "events"),
        ("replication.copy_replica", "replication"),
        ("notifications.deliver_notice", "notifications"),
        ("usage.ingest_events", "usage"),
        ("catalog.prune_outbox", "default"),
    ],
)
def test_each_task_is_routed_to_the_queue_of_its_kind_of_work(task_name, queue):
    assert queue_of(task_name) == settings.CELERY_QUEUES[queue]


def test_queue_names_are_this_test_runs_own():
    assert all(
        name.startswith(settings.CELERY_QUEUE_PREFIX) for name in settings.CELERY_QUEUES.values()
    )
    assert settings.CELERY_QUEUE_PREFIX


def test_a_worker_without_queue_options_consumes_every_queue():
    consumed = {queue.name for queue in celery_app.amqp.queues.values()}
    assert consumed == set(settings.CELERY_QUEUES.values())
