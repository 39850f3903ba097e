"""An upload holds its key from its first byte: its row is written before the file goes
(status `uploading`), so a second upload started meanwhile does not choose the same
version's key, and a process that dies mid-way leaves a row the sweeper finishes,
never an object that nothing refers to and that would block that version for good."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.storage import get_object_store
from tests.versioning.conftest import CSV, big_csv, queue
from versioning.models import DatasetVersion, JobSource, JobStatus, PublishJob
from versioning.services import publish_job_create, publish_job_run, publish_jobs_sweep
from versioning.services.intake import ReservationLost

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

NEWER = CSV + b"2024-08-11,ST3,1\n"
NEWEST = NEWER + b"2024-08-12,ST4,2\n"


class Watched(io.BytesIO):
    """An upload stream that calls `during(self)` once, after `after` bytes were read."""

    def __init__(self, data: bytes, *, after: int, during) -> None:
        super().__init__(data)
        self.after, self.during = after, during

    def read(self, size=-1):
        if self.during and self.tell() >= self.after:
            during, self.during = self.during, None
            during(self)
        return super().read(size)


def _upload(dataset, system, stream, **options):
    return publish_job_create(
        dataset=dataset,
        stream=stream,
        filename="data.csv",
        actor=system,
        source=JobSource.COMMAND,
        **options,
    )


def test_the_row_holds_the_predicted_key_while_the_file_is_still_uploading(dataset, system):
    publish_job_run(job_id=queue(dataset, CSV, system).pk)
    seen = []

    def look(_stream):
        seen.extend(PublishJob.objects.filter(status=JobStatus.UPLOADING).values())

    job = _upload(dataset, system, Watched(NEWER, after=10, during=look))

    assert len(seen) == 1
    assert seen[0]["id"] == job.pk and seen[0]["target_version"] == "1.0.1"
    assert seen[0]["target_key"] == seen[0]["staging_key"] == job.target_key
    assert seen[0]["lease_until"] is not None and seen[0]["profile"] is None
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.lease_until is None
    assert job.bytes_total == len(NEWER) and job.profile["row_count"] == 3


def test_a_second_upload_started_during_the_first_goes_to_staging_and_both_publish(
    dataset, system, bucket_keys
):
    publish_job_run(job_id=queue(dataset, CSV, system).pk)
    second = []

    def another_upload(_stream):
        second.append(_upload(dataset, system, io.BytesIO(NEWEST)))

    first = _upload(dataset, system, Watched(NEWER, after=10, during=another_upload))

    assert first.target_version == "1.0.1"
    assert second[0].target_version == "" and second[0].staging_key.startswith("acme/staging/")
    for job in (first, second[0]):
        publish_job_run(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.message
    assert sorted(DatasetVersion.objects.values_list("version", flat=True)) == [
        "1.0.0",
        "1.0.1",
        "1.0.2",
    ]
    assert bucket_keys("acme/staging/") == []


def test_one_key_is_held_by_one_unfinished_publish_at_a_time(dataset, system):
    job = queue(dataset, CSV, system, requested_version="1.0.0")
    other = PublishJob(
        dataset=dataset,
        source=JobSource.COMMAND,
        staging_key="acme/staging/other.csv",
        format="csv",
        target_version="1.0.0",
        target_key=job.target_key,
        status=JobStatus.UPLOADING,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        other.save()
    PublishJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    other.save()  # once the first is finished, the key may be held again


def test_two_uploads_that_chose_one_key_at_the_same_moment_do_not_both_hold_it(dataset, system):
    from catalog.exceptions import Conflict
    from versioning.options import PublishOptions
    from versioning.services import intake

    def reserve(version: str, *, named: bool) -> PublishJob:
        options = PublishOptions(version=version if named else "")
        return intake._reserve(
            intake._job_fields(
                job_id=uuid.uuid4(),
                dataset=dataset,
                actor=system,
                source=JobSource.COMMAND,
                options=options,
                filename="data.csv",
                key=f"acme/v1/gold/txn_daily/txn_daily_2024-08-10_v{version}.csv",
                file_format="csv",
                target_version=version,
            )
        )

    first = reserve("1.0.0", named=False)
    second = reserve("1.0.0", named=False)  # its check ran before the first's row existed
    assert first.target_key == first.staging_key and first.target_version == "1.0.0"
    assert second.target_key == "" and second.staging_key.startswith("acme/staging/")
    with pytest.raises(Conflict, match="1.0.0 is under way"):
        reserve("1.0.0", named=True)
    assert PublishJob.objects.filter(status=JobStatus.UPLOADING).count() == 2


@pytest.mark.parametrize("version", ["", "2.0.0"], ids=["predicted", "named"])
def test_a_failed_upload_leaves_no_row_no_object_and_frees_the_version(
    dataset, system, bucket_keys, version
):
    def client_goes_away(_stream):
        raise OSError("the client went away")

    with pytest.raises(OSError, match="went away"):
        _upload(
            dataset,
            system,
            Watched(big_csv(20), after=9 * 1024 * 1024, during=client_goes_away),
            requested_version=version,
        )

    assert not PublishJob.objects.exists() and bucket_keys("acme/") == []
    job = queue(dataset, CSV, system, requested_version=version)
    assert job.target_version == (version or "1.0.0")
    assert publish_job_run(job_id=job.pk).status == JobStatus.SUCCEEDED


def _died_midway(dataset, system, data: bytes) -> PublishJob:
    """What an upload leaves when its process is killed after the whole file reached
    storage and before its job was queued: the steps it had taken, and no more."""
    from versioning.options import PublishOptions
    from versioning.services import intake

    options = PublishOptions()
    job_id = uuid.uuid4()
    key, version = intake.upload_key(
        dataset=dataset, job_id=job_id, file_format="csv", options=options
    )
    job = intake._reserve(
        intake._job_fields(
            job_id=job_id,
            dataset=dataset,
            actor=system,
            source=JobSource.COMMAND,
            options=options,
            filename="data.csv",
            key=key,
            file_format="csv",
            target_version=version,
        )
    )
    get_object_store().write(job.staging_key, io.BytesIO(data), if_absent=True)
    return job


def test_the_sweeper_fails_an_upload_whose_process_died_and_frees_its_key(
    dataset, system, bucket_keys
):
    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)
    dead = _died_midway(dataset, system, NEWER)
    assert bucket_keys("acme/v1/") == sorted([first.version.key, dead.target_key])

    publish_jobs_sweep()  # still within its lease: it may be alive
    dead.refresh_from_db()
    assert dead.status == JobStatus.UPLOADING

    PublishJob.objects.filter(pk=dead.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    publish_jobs_sweep()
    dead.refresh_from_db()

    assert dead.status == JobStatus.FAILED and dead.error_code == "interrupted"
    assert "stopped before the whole file arrived" in dead.message
    assert bucket_keys("acme/v1/") == [first.version.key]
    again = queue(dataset, NEWEST, system)
    assert again.target_key == dead.target_key
    assert publish_job_run(job_id=again.pk).status == JobStatus.SUCCEEDED


def test_an_upload_whose_hold_the_sweeper_ended_keeps_nothing(dataset, system, bucket_keys):
    from django.test import override_settings

    first = publish_job_run(job_id=queue(dataset, CSV, system).pk)

    def stalled_past_its_lease(_stream):
        PublishJob.objects.filter(status=JobStatus.UPLOADING).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        publish_jobs_sweep()

    with override_settings(PUBLISH_JOB_LEASE_SECONDS=0), pytest.raises(ReservationLost):
        _upload(
            dataset,
            system,
            Watched(big_csv(20), after=9 * 1024 * 1024, during=stalled_past_its_lease),
        )

    failed = PublishJob.objects.exclude(pk=first.pk).get()
    assert failed.status == JobStatus.FAILED and failed.error_code == "interrupted"
    assert bucket_keys("acme/") == [first.version.key]
    assert DatasetVersion.objects.get(is_current=True).pk == first.version.pk


def test_the_job_list_shows_an_upload_under_way_by_the_bytes_received(
    client, steward, dataset, system
):
    from django.template.defaultfilters import filesizeformat
    from django.urls import reverse

    pages = []

    def steward_looks(_stream):
        PublishJob.objects.filter(status=JobStatus.UPLOADING).update(bytes_done=3 * 2**20)
        pages.append(client.get(reverse("admin:versioning_publishjob_changelist")))

    client.force_login(steward)
    _upload(dataset, system, Watched(big_csv(2), after=1024 * 1024, during=steward_looks))

    assert pages[0].status_code == 200
    received = filesizeformat(3 * 2**20).encode()
    assert b"Uploading" in pages[0].content and received + b" received" in pages[0].content


def test_an_upload_renews_its_hold_and_records_the_bytes_sent_as_they_go(dataset, system):
    from django.test import override_settings

    seen = []

    def progress(done: int) -> None:  # the command's progress bar, called after the renewal
        seen.append((done, PublishJob.objects.values("bytes_done", "lease_until").get()))

    with override_settings(PUBLISH_JOB_LEASE_SECONDS=0):  # renewed at every step
        job = _upload(dataset, system, io.BytesIO(big_csv(20)), on_progress=progress)

    assert len(seen) >= 2 and seen[-1][0] == len(big_csv(20))
    assert all(row["bytes_done"] == done for done, row in seen)
    assert seen[-1][1]["lease_until"] > seen[0][1]["lease_until"]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.bytes_total == len(big_csv(20))
