"""What a publish costs in queries: a fixed number, whatever the organisation holds, and
none spent on what the worker already knows (guards against queries creeping back)."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta

import pytest
from django.db import connection

from catalog.services import dataset_create
from catalog.storage import get_object_store
from tests.versioning.conftest import CSV
from versioning.models import DatasetVersion, JobSource, JobStatus, PublishJob
from versioning.selectors import version_numbers_taken
from versioning.semver import Version, version_fields
from versioning.services import publish_job_create, publish_job_run
from versioning.services.jobs import Claim, job_objects_discard, publish_job_claim

pytestmark = pytest.mark.django_db

# Claim (2), lock and unlock (2), current version and versions taken (2); the commit:
# its two statements, version, changelog (2), make current (2), dataset touched,
# manifest with its organisation locked (3), two events with their deliveries (4),
# audit, the job's success (which fences the claim); the job as the task returns it (1).
# The file's profile was recorded while it uploaded, so no progress beat: nothing is
# read; and it was uploaded to the key of the version a data-only change gets, so the
# checks that no other publish holds a target key, and its recording (3), are not
# needed (27 when the file waits in staging), nor is asking whether that key is a
# version's once the job has committed that version. It was 31: re-reading the target
# key, clearing a cleanup flag that was not set and the savepoint around making it
# current went; the organisation's lock came (test_manifest_order.py); then 26: the
# check of the claim before the commit went (its last statement fences it), and the
# question about the published key.
PUBLISH_QUERIES = 24


def _queued(dataset, system, data: bytes) -> PublishJob:
    return publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(data),
        filename="day.csv",
        actor=system,
        source=JobSource.COMMAND,
    )


def test_a_small_publish_runs_a_fixed_number_of_queries(
    dataset, publish, system, django_assert_num_queries
):
    publish(dataset, CSV)
    job = _queued(dataset, system, CSV + b"2024-08-12,ST3,1.5\n")
    with django_assert_num_queries(PUBLISH_QUERIES):
        publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message


def test_the_queries_of_a_publish_do_not_grow_with_the_organisations_datasets(
    dataset, publish, system, acme, django_assert_num_queries
):
    for n in range(5):
        other = dataset_create(organization=acme, layer="gold", name=f"other_{n}", actor=system)
        publish(other, CSV + f"2024-09-0{n + 1},ST9,1\n".encode())
    publish(dataset, CSV)
    job = _queued(dataset, system, CSV + b"2024-08-12,ST3,1.5\n")
    with django_assert_num_queries(PUBLISH_QUERIES):
        publish_job_run(job_id=job.pk)


def test_removing_a_published_jobs_staged_object_costs_one_query(
    dataset, publish, django_assert_num_queries, bucket_keys
):
    job = publish(dataset, CSV)
    get_object_store().write(job.staging_key, io.BytesIO(CSV))  # as if still there
    with django_assert_num_queries(1):  # is its target a version's? yes: kept
        assert job_objects_discard(job=job, store=get_object_store())
    assert not bucket_keys("acme/staging/")
    assert DatasetVersion.objects.filter(key=job.target_key).exists()
    assert get_object_store().exists(job.target_key)


def test_removing_a_failed_jobs_objects_removes_its_uncommitted_target(
    dataset, system, bucket_keys
):
    job = publish_job_claim(job_id=_queued(dataset, system, CSV).pk)
    store = get_object_store()
    target = "acme/v1/gold/txn_daily/txn_daily_2024-08-10_v1.0.0.csv"
    Claim.of(job).update(target_version="1.0.0", target_key=target)
    job.target_key = target
    store.write(target, io.BytesIO(CSV))
    assert job_objects_discard(job=job, store=store)
    assert not store.exists(target)
    assert not bucket_keys("acme/staging/")


@pytest.fixture
def storage_requests(s3_calls):
    """The S3 operations this process sends while the test runs, in order."""
    return s3_calls.sent


def test_a_small_publish_sends_one_storage_request(dataset, publish, system, storage_requests):
    publish(dataset, CSV)
    job = _queued(dataset, system, CSV + b"2024-08-12,ST3,1.5\n")
    assert job.staging_key == job.target_key and job.target_version == "1.0.1"
    storage_requests.clear()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    # The profile was recorded at upload and the file went to the key of the version it
    # became, so nothing is read, copied or removed: check the file is there.
    assert storage_requests == ["HeadObject"]
    assert job.version.key == job.staging_key and get_object_store().exists(job.version.key)


def test_a_publish_whose_columns_changed_copies_once_from_the_predicted_key(
    dataset, publish, system, storage_requests, bucket_keys
):
    publish(dataset, CSV)
    job = _queued(dataset, system, b"day,store,revenue,units\n2024-08-12,ST3,1.5,2\n")
    predicted = job.staging_key
    storage_requests.clear()
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    # A column was added: 1.1.0, not the 1.0.1 the upload went to. Check the file is
    # there and the final key free, copy, remove the predicted key's object.
    assert job.version.version == "1.1.0"
    assert storage_requests == ["HeadObject", "HeadObject", "CopyObject", "DeleteObject"]
    assert bucket_keys("acme/v1/gold/") == sorted(
        DatasetVersion.objects.values_list("key", flat=True)
    )
    assert predicted not in bucket_keys("acme/v1/gold/")


def test_a_job_whose_staged_file_is_gone_fails_and_says_so(dataset, publish, system):
    publish(dataset, CSV)
    job = _queued(dataset, system, CSV + b"2024-08-12,ST3,1.5\n")
    get_object_store().delete(job.staging_key)
    publish_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "no longer in staging" in job.message
    assert DatasetVersion.objects.filter(dataset=dataset, is_current=True).get().version == "1.0.0"


# Taking a file in (its steward check aside, which the system actor skips): is another
# publish of the dataset unfinished, the current version, the versions in order (the
# version a data-only change gets), whether a version, publish or resumable upload
# holds that version's key (one query), the row that holds it (3, with its savepoint),
# and the job queued with its audit entry (4).
UPLOAD_QUERIES = 11


def test_taking_a_file_in_runs_a_fixed_number_of_queries(
    dataset, publish, system, django_assert_num_queries
):
    publish(dataset, CSV)
    with django_assert_num_queries(UPLOAD_QUERIES):
        job = _queued(dataset, system, CSV + b"2024-08-12,ST3,1.5\n")
    assert job.target_version == "1.0.1" and job.status == JobStatus.QUEUED


@contextlib.contextmanager
def rows_read():
    """The number of rows each SELECT in the block returned (PostgreSQL's row count)."""
    counts: list[int] = []

    def count(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip("( ").upper().startswith("SELECT"):
            counts.append(context["cursor"].rowcount)
        return result

    with connection.execute_wrapper(count):
        yield counts


def _version_like(current: DatasetVersion, number: Version, **changes) -> DatasetVersion:
    """Another version of `current`'s dataset numbered `number`, not current."""
    fields = {
        f.attname: getattr(current, f.attname)
        for f in DatasetVersion._meta.concrete_fields
        if not f.primary_key
    }
    return DatasetVersion(
        **{
            **fields,
            **version_fields(number),
            "is_current": False,
            "key": f"{current.key}.{number}",
            **changes,
        }
    )


def _history(dataset, versions: int) -> None:
    """`versions` earlier versions of the dataset, below its current one (as a dataset
    that has been published to for a long time has)."""
    current = DatasetVersion.objects.get(dataset=dataset, is_current=True)
    DatasetVersion.objects.bulk_create(
        _version_like(
            current, Version(0, n, 0), published_at=current.published_at - timedelta(days=n)
        )
        for n in range(1, versions + 1)
    )


def test_a_publish_reads_no_more_rows_for_a_dataset_with_a_long_history(
    dataset, publish, system, acme
):
    publish(dataset, CSV)
    _history(dataset, 300)
    young = dataset_create(organization=acme, layer="gold", name="young", actor=system)
    publish(young, CSV)
    read = {}
    for each in (young, dataset):
        with rows_read() as counts:
            job = _queued(each, system, CSV + b"2024-08-12,ST3,1.5\n")
            publish_job_run(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.message
        assert job.version.version == "1.0.1"  # the next patch: nothing was in its way
        read[each.name] = counts
    # Taking the file in and publishing it read the same rows for both datasets: none of
    # the 300 earlier versions' numbers.
    assert sum(read[dataset.name]) == sum(read["young"]), read
    assert max(read[dataset.name]) < 10, read


def test_the_numbers_a_new_version_skips_are_those_at_or_above_its_base(dataset, publish):
    publish(dataset, CSV)  # 1.0.0
    _history(dataset, 2)  # 0.1.0, 0.2.0
    current = DatasetVersion.objects.get(dataset=dataset, is_current=True)
    DatasetVersion.objects.bulk_create(
        _version_like(current, Version.parse(number))
        for number in ("1.0.0-rc.1", "1.0.1", "1.1.0", "1.1.0-rc.2", "2.0.0", "3.0.1")
    )
    taken = version_numbers_taken(dataset_id=dataset.pk, base=Version.parse("1.0.0"))
    assert taken == {"1.0.0", "1.0.0-rc.1", "1.0.1", "1.1.0", "1.1.0-rc.2", "2.0.0", "3.0.1"}
    # A prerelease's next release is its own number: the release must be in the set.
    taken = version_numbers_taken(dataset_id=dataset.pk, base=Version.parse("1.1.0-rc.2"))
    assert taken == {"1.1.0", "1.1.0-rc.2", "2.0.0", "3.0.1"}
    assert version_numbers_taken(dataset_id=dataset.pk, base=Version.parse("2.0.1")) == {"3.0.1"}
    assert version_numbers_taken(dataset_id=dataset.pk, base=None) == set(
        DatasetVersion.objects.filter(dataset=dataset).values_list("version", flat=True)
    )
