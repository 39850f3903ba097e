"""The publish pipeline, run in this process against PostgreSQL and the S3 server."""

from __future__ import annotations

import gzip
import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.audit import Actor
from catalog.exceptions import FileRejected, Forbidden, InvalidInput
from catalog.models import AuditEntry, DomainEvent
from catalog.storage import get_object_store, sha256_of
from versioning.manifest import manifest_checksum, manifest_latest
from versioning.models import DatasetVersion, JobOutcome, JobStatus, PublishJob

pytestmark = pytest.mark.django_db

CSV = (
    b"date_key,store_id,revenue,is_holiday\n"
    b"2024-08-10,ST0001,10.5,false\n2024-08-10,ST0002,7,true\n"
)
CSV_2 = CSV + b"2024-08-11,ST0001,3.25,false\n"


def current(dataset):
    return DatasetVersion.objects.get(dataset=dataset, is_current=True)


def test_publishing_a_csv_stores_it_under_its_immutable_key_with_its_facts(
    dataset, publish, bucket_keys
):
    job = publish(dataset, CSV)

    assert job.status == JobStatus.SUCCEEDED, job.message
    version = current(dataset)
    assert version.version == "1.0.0"
    assert version.key.startswith("acme/v1/gold/txn_daily/txn_daily_")
    assert version.key.endswith("_v1.0.0.csv")
    assert version.sha256 == hashlib.sha256(CSV).hexdigest()
    assert version.size_bytes == len(CSV)
    assert version.row_count == 2
    assert version.schema == [
        {"name": "date_key", "type": "date", "nulls": 0},
        {"name": "store_id", "type": "string", "nulls": 0},
        {"name": "revenue", "type": "float", "nulls": 0},
        {"name": "is_holiday", "type": "boolean", "nulls": 0},
    ]
    assert sha256_of(get_object_store(), version.key) == version.sha256
    # The staged upload is gone once published.
    assert bucket_keys("acme/staging/") == []


def test_the_manifest_lists_the_current_version_and_checks_itself(dataset, publish):
    publish(dataset, CSV)
    publish(dataset, CSV_2)

    body = manifest_latest(organization=dataset.organization).body
    entry = body["datasets"]["gold/txn_daily"]
    version = current(dataset)
    assert body["total_datasets"] == 1
    assert entry["schema_version"] == "1.0.1"
    assert entry["sha256"] == hashlib.sha256(CSV_2).hexdigest()
    assert entry["row_count"] == 3
    assert entry["size_bytes"] == len(CSV_2)
    assert entry["latest_csv"] == "/" + version.key
    assert entry["content_type"] == "text/csv"
    assert entry["description"] == "Daily transaction aggregates"
    assert body["integrity"]["total_size_bytes"] == len(CSV_2)
    assert body["integrity"]["manifest_sha256"] == manifest_checksum(body)
    assert set(entry) == {
        "latest_csv",
        "date",
        "row_count",
        "sha256",
        "size_bytes",
        "content_type",
        "schema_version",
        "last_modified",
        "description",
    }


def test_without_a_version_a_data_only_change_takes_the_next_patch(dataset, publish):
    publish(dataset, CSV, version="1.4.2")
    job = publish(dataset, CSV_2)
    assert job.version.version == "1.4.3"
    assert job.version.change_type == "patch"
    assert job.version.parent.version == "1.4.2"


def test_publishing_identical_bytes_creates_no_new_version_and_says_so(dataset, publish):
    first = publish(dataset, CSV)
    again = publish(dataset, CSV)

    assert again.status == JobStatus.SUCCEEDED
    assert again.outcome == JobOutcome.UNCHANGED
    assert "identical to the current version 1.0.0" in again.message
    assert again.version_id == first.version_id
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 1


def test_a_publish_records_its_event_and_audit_entry(dataset, publish):
    job = publish(dataset, CSV)
    event = DomainEvent.objects.get(topic="version.published")
    assert event.payload["version"] == "1.0.0"
    assert event.payload["dataset"] == "gold/txn_daily"
    assert AuditEntry.objects.filter(
        action="version.publish", object_id=str(job.version_id)
    ).exists()


def test_gzip_and_parquet_files_publish_with_their_own_formats(dataset, publish, acme, system):
    from catalog.services import dataset_create

    gz = gzip.compress(CSV)
    job = publish(dataset, gz, filename="day.csv.gz")
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.version.key.endswith(".csv.gz")
    assert job.version.sha256 == hashlib.sha256(gz).hexdigest()
    assert job.version.row_count == 2

    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]}), sink)
    other = dataset_create(organization=acme, layer="silver", name="events", actor=system)
    job = publish(other, sink.getvalue(), filename="events.parquet")
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.version.content_type == "application/vnd.apache.parquet"
    assert job.version.row_count == 3
    assert job.version.schema == [
        {"name": "a", "type": "integer", "nulls": 0},
        {"name": "b", "type": "string", "nulls": 1},
    ]


# --- Bad input: a clear message, nothing half-published, the previous version current ---

BAD_FILES = {
    "binary posing as csv": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
        "data.csv",
    ),
    "ragged rows": (b"a,b,c\n1,2,3\n4,5\n", "data.csv"),
    "header only": (b"a,b,c\n", "data.csv"),
    "duplicate column names": (b"a,b,a\n1,2,3\n", "data.csv"),
    "empty column name": (b"a,,c\n1,2,3\n", "data.csv"),
    "not utf-8": (b"name,city\nJos\xe9,S\xe3o Paulo\n", "data.csv"),
    "corrupt gzip": (gzip.compress(CSV * 50)[:-40], "data.csv.gz"),
    "garbage gzip": (b"\x1f\x8b\x08\x00" + b"not really gzip at all" * 20, "data.csv.gz"),
    "corrupt parquet": (b"PAR1" + b"\x00garbage" * 100 + b"PAR1", "data.parquet"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_fails_its_job_clearly_and_leaves_the_previous_version_current(
    case, dataset, publish, bucket_keys
):
    publish(dataset, CSV)
    before = current(dataset)
    keys_before = bucket_keys("acme/v1/gold/")
    data, filename = BAD_FILES[case]

    try:
        job = publish(dataset, data, filename=filename)
    except FileRejected as exc:  # refused before a job was even queued
        message = exc.message
    else:
        assert job.status == JobStatus.FAILED
        assert job.error_code == "file_rejected"
        message = job.message
    assert message and "Traceback" not in message and len(message) < 500

    assert current(dataset) == before
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 1
    assert bucket_keys("acme/v1/gold/") == keys_before
    assert bucket_keys("acme/staging/") == []
    assert (
        manifest_latest(organization=dataset.organization).body["datasets"]["gold/txn_daily"][
            "sha256"
        ]
        == before.sha256
    )


def test_an_empty_file_is_refused_before_anything_is_stored(dataset, publish, bucket_keys):
    with pytest.raises(FileRejected, match="empty"):
        publish(dataset, b"")
    assert bucket_keys() == []
    assert not PublishJob.objects.exists()


@pytest.mark.parametrize("name", ["a/b", "..", "has space", "UpperCase", "../etc", ""])
def test_a_dataset_name_that_is_not_a_lower_case_slug_is_refused(name, acme, system):
    from catalog.services import dataset_create

    with pytest.raises(InvalidInput, match="name"):
        dataset_create(organization=acme, layer="gold", name=name, actor=system)


@pytest.mark.parametrize("version", ["1.0", "one", "1.0.0.0", "01.0.0", "1.0.0+build.1"])
def test_a_version_that_is_not_semantic_is_refused(version, dataset, publish):
    with pytest.raises(InvalidInput):
        publish(dataset, CSV, version=version)
    assert not DatasetVersion.objects.exists()


@pytest.mark.parametrize("version", ["1.0.0", "0.9.0", "1.0.0-rc.1"])
def test_a_version_not_above_the_current_one_is_refused(version, dataset, publish):
    publish(dataset, CSV, version="1.0.0")
    with pytest.raises(InvalidInput, match="not above the current version 1.0.0"):
        publish(dataset, CSV_2, version=version)
    assert current(dataset).version == "1.0.0"


def test_a_version_that_became_too_low_while_queued_fails_the_job(dataset, publish, system):
    from versioning.models import JobSource
    from versioning.services import publish_job_create, publish_job_run

    queued = publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(CSV_2),
        filename="d.csv",
        actor=system,
        source=JobSource.COMMAND,
        requested_version="1.2.0",
    )
    publish(dataset, CSV, version="2.0.0")
    job = publish_job_run(job_id=queued.pk)
    assert job.status == JobStatus.FAILED
    assert "not above the current version 2.0.0" in job.message
    assert current(dataset).version == "2.0.0"


def test_publishing_into_an_organisation_you_do_not_steward_is_refused(
    dataset, publish, outsider, viewer
):
    for user in (outsider, viewer):
        with pytest.raises(Forbidden, match="not a steward of the organisation 'acme'"):
            publish(dataset, CSV, actor=Actor(user=user, via="api"))
    assert not PublishJob.objects.exists()


def test_a_steward_may_publish_into_their_organisation(dataset, publish, steward):
    job = publish(dataset, CSV, actor=Actor(user=steward, ip_address="192.0.2.7", via="admin"))
    assert job.status == JobStatus.SUCCEEDED
    assert job.version.published_by == steward
    entry = AuditEntry.objects.get(action="version.publish")
    assert (entry.actor, entry.ip_address, entry.via) == (steward, "192.0.2.7", job.source)
