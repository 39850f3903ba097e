"""The quality events versioning records for others: `publish.failed` when a file is
refused for its content, `dataset.stale` / `dataset.fresh` once per stale episode."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from catalog.models import DomainEvent
from versioning.models import DatasetVersion, JobSource, PublishJob
from versioning.services import publish_job_create, publish_job_run
from versioning.services.freshness import datasets_freshness_check

pytestmark = pytest.mark.django_db

CSV = b"day,store,revenue\n2024-08-10,ST1,10.5\n2024-08-10,ST2,7\n"


def topics(topic):
    return list(DomainEvent.objects.filter(topic=topic).order_by("id"))


def test_a_file_refused_for_its_content_records_publish_failed_once(dataset, publish):
    publish(dataset, CSV)
    job = publish(dataset, b"day,store\n2024-08-10,ST1\n", version="1.1.0")
    assert job.status == "failed"
    [event] = topics("publish.failed")
    assert event.payload["job_id"] == str(job.pk)
    assert event.payload["dataset"] == "gold/txn_daily"
    assert event.payload["organization"] == "acme"
    assert event.payload["error_code"] == job.error_code
    assert "revenue" in event.payload["message"]
    assert event.organization == dataset.organization


def test_a_job_stopped_by_its_worker_dying_is_no_quality_failure(dataset, system):
    job = publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(CSV),
        filename="data.csv",
        actor=system,
        source=JobSource.COMMAND,
    )
    PublishJob.objects.filter(pk=job.pk).update(attempts=settings.PUBLISH_JOB_MAX_ATTEMPTS)
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "interrupted")
    assert topics("publish.failed") == []


def test_a_late_dataset_is_stale_once_and_fresh_again_after_a_new_version(dataset, publish):
    dataset.freshness_hours = 24
    dataset.save()
    publish(dataset, CSV)
    published_at = DatasetVersion.objects.get(dataset=dataset).published_at

    assert datasets_freshness_check(now=published_at + timedelta(hours=23)) == 0
    late = published_at + timedelta(hours=27)
    assert datasets_freshness_check(now=late) == 1
    assert datasets_freshness_check(now=late + timedelta(hours=5)) == 0
    [stale] = topics("dataset.stale")
    assert stale.payload["version"] == "1.0.0"
    assert stale.payload["freshness_hours"] == 24
    assert stale.payload["hours_late"] == 3

    publish(dataset, CSV + b"2024-08-11,ST3,1.5\n")
    now = timezone.now()
    assert datasets_freshness_check(now=now) == 1
    [fresh] = topics("dataset.fresh")
    assert fresh.payload["version"] == "1.0.1"
    assert datasets_freshness_check(now=now) == 0
    # A second episode starts when the new version grows late too.
    assert datasets_freshness_check(now=now + timedelta(hours=25)) == 1
    assert len(topics("dataset.stale")) == 2


def test_datasets_without_an_expectation_or_a_version_are_never_stale(dataset, publish):
    publish(dataset, CSV)
    assert datasets_freshness_check(now=timezone.now() + timedelta(days=365)) == 0
    assert topics("dataset.stale") == []
