"""`manage.py publish` sends a file above RESUMABLE_UPLOAD_THRESHOLD_BYTES as a resumable
upload, in parts four at a time straight to storage, and `--resume` finishes one that
stopped by sending only the parts storage does not hold."""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command

from catalog.audit import Actor
from catalog.storage import S3ObjectStore, get_object_store
from tests.api.test_resumable_uploads import BIG, BIG_SHA, MIB, unfinished_uploads
from versioning.models import DatasetVersion, JobSource, PartChecksum, ResumableUpload
from versioning.services.resumable import (
    resumable_upload_create,
    resumable_upload_part_urls,
    resumable_upload_part_write,
)

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


@pytest.fixture
def big_file(settings, tmp_path):
    settings.RESUMABLE_UPLOAD_THRESHOLD_BYTES = 1 * MIB
    settings.RESUMABLE_PART_BYTES = 5 * MIB
    path = tmp_path / "day.csv"
    path.write_bytes(BIG)
    return path


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), verbosity=0)
    return out.getvalue()


def test_publish_sends_a_file_above_the_threshold_in_parts_and_publishes_it(dataset, big_file):
    out = run(
        "publish",
        "gold/txn_daily",
        str(big_file),
        "--version",
        "1.0.0",
        "--sha256",
        BIG_SHA,
        "--in-process",
    )
    upload = ResumableUpload.objects.get()
    assert f"Resumable upload {upload.pk}: 3 parts" in out
    assert "Sending 3 of 3 parts." in out
    assert upload.status == "completed" and upload.source == JobSource.COMMAND
    # Every part went with its CRC32, checked by storage (or, embedded, the app).
    assert upload.checksum == PartChecksum.CRC32
    version = DatasetVersion.objects.get(is_current=True)
    assert (version.version, version.sha256, version.size_bytes) == ("1.0.0", BIG_SHA, len(BIG))
    store = get_object_store()
    if isinstance(store, S3ObjectStore):
        head = store.client.head_object(
            Bucket=store.bucket, Key=version.key, ChecksumMode="ENABLED"
        )
        crcs = b"".join(
            zlib.crc32(BIG[n : n + 5 * MIB]).to_bytes(4, "big") for n in range(0, len(BIG), 5 * MIB)
        )
        composite = base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode()
        assert head["ChecksumCRC32"].removesuffix("-3") == composite
    assert f"sha256:  {BIG_SHA}" in out
    assert unfinished_uploads() == []


def test_publish_below_the_threshold_streams_the_file_as_before(dataset, big_file, settings):
    settings.RESUMABLE_UPLOAD_THRESHOLD_BYTES = len(BIG)
    run("publish", "gold/txn_daily", str(big_file), "--in-process")
    assert ResumableUpload.objects.count() == 0
    assert DatasetVersion.objects.get().sha256 == BIG_SHA


@pytest.mark.parametrize("checksum", [PartChecksum.NONE, PartChecksum.CRC32])
def test_publish_resume_sends_only_the_parts_storage_does_not_hold(dataset, big_file, checksum):
    upload = resumable_upload_create(
        dataset=dataset,
        actor=Actor.system(),
        source=JobSource.COMMAND,
        filename="day.csv",
        size=len(BIG),
        checksum=checksum,
    )
    part = BIG[5 * MIB : 10 * MIB]
    crc32 = base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode() if checksum else ""
    if hasattr(get_object_store(), "multipart_part_write"):
        resumable_upload_part_write(
            upload=upload, number=2, stream=io.BytesIO(part), length=None, crc32=crc32
        )
    else:
        [url] = resumable_upload_part_urls(
            upload=upload, numbers=[2], crc32={2: crc32} if crc32 else None
        )
        answer = requests.put(url.url.url, data=part, headers=url.headers, timeout=60)
        assert answer.status_code == 200

    out = run(
        "publish", "gold/txn_daily", str(big_file), "--resume", str(upload.pk), "--in-process"
    )
    assert "Sending 2 of 3 parts." in out
    assert DatasetVersion.objects.get(is_current=True).sha256 == hashlib.sha256(BIG).hexdigest()
    with pytest.raises(CommandError, match="already complete"):
        run("publish", "gold/txn_daily", str(big_file), "--resume", str(upload.pk))


def test_resume_of_an_unknown_upload_or_of_another_file_is_refused(dataset, big_file, tmp_path):
    with pytest.raises(CommandError, match="No upload"):
        run("publish", "gold/txn_daily", str(big_file), "--resume", "not-a-uuid")
    upload = resumable_upload_create(
        dataset=dataset, actor=Actor.system(), source=JobSource.COMMAND, filename="a.csv", size=7
    )
    with pytest.raises(CommandError, match="is of 7 bytes"):
        run("publish", "gold/txn_daily", str(big_file), "--resume", str(upload.pk))
