"""Resumable uploads through the API: begin, part URLs, parts straight to storage (S3
presigned URLs over HTTP, or the app's own signed part URLs), resume, complete into a
publish job, abort, the sweeper, and every bad input refused in the one error shape.

Each flow runs against the configured store (S3 on loopback in the services mode) and
against local files (the embedded mode's store), whatever the mode."""

from __future__ import annotations

import hashlib
import io
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.multipart import part_signature
from catalog.storage import LocalObjectStore, S3ObjectStore, get_object_store
from tests.api.conftest import CSV, error_of
from versioning.models import DatasetVersion, JobStatus, PublishJob, ResumableUpload
from versioning.services import publish_job_run
from versioning.services.jobs import version_key_held
from versioning.services.publish import _copy_ahead
from versioning.services.resumable import resumable_upload_join, resumable_uploads_sweep

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

BEGIN = "/api/v1/datasets/gold/txn_daily/uploads/"
MIB = 1024**2


def big_csv(min_bytes: int) -> bytes:
    rows = [b"date_key,store_id,revenue,is_holiday\n"]
    size, i = len(rows[0]), 0
    while size < min_bytes:
        row = b"2024-08-%02d,ST%06d,%d.25,%s\n" % (
            i % 28 + 1,
            i,
            i % 997,
            b"true" if i % 7 == 0 else b"false",
        )
        rows.append(row)
        size += len(row)
        i += 1
    return b"".join(rows)


BIG = big_csv(11 * MIB)  # three parts of 5 MiB: 5, 5 and the rest
BIG_SHA = hashlib.sha256(BIG).hexdigest()


def stored_keys(prefix: str) -> list[str]:
    store = get_object_store()
    if isinstance(store, LocalObjectStore):
        root = store.root
        found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return sorted(k for k in found if k.startswith(prefix))
    response = store.client.list_objects_v2(Bucket=store.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in response.get("Contents", []))


def unfinished_uploads() -> list[str]:
    """Multipart uploads storage still holds parts for."""
    store = get_object_store()
    if isinstance(store, LocalObjectStore):
        folder = store.root / ".multipart"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    response = store.client.list_multipart_uploads(Bucket=store.bucket)
    return sorted(u["UploadId"] for u in response.get("Uploads", []))


def begin(client, data: bytes = BIG, **fields):
    body = {"filename": "day.csv", "size": len(data), **fields}
    return client.post(BEGIN, body, format="json")


def part_urls(client, upload: dict, parts: list[int] | None = None) -> list[dict]:
    body = {} if parts is None else {"parts": parts}
    response = client.post(upload["part_urls_url"], body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["parts"]


def put_part(url: str, data: bytes):
    """PUT one part as any HTTP client would: to S3 over the wire, or to the app."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if url.startswith(base + "/api/"):
        response = APIClient().generic(
            "PUT", url[len(base) :], data, content_type="application/octet-stream"
        )
        return response.status_code, response.get("ETag"), response
    response = requests.put(url, data=data, timeout=60)
    return response.status_code, response.headers.get("ETag"), response


def piece(data: bytes, part: dict, part_size: int) -> bytes:
    start = (part["part_number"] - 1) * part_size
    return data[start : start + part["size"]]


def send(parts: list[dict], data: bytes, part_size: int, *, parallel: bool) -> dict[int, str]:
    def one(part):
        status, etag, response = put_part(part["url"], piece(data, part, part_size))
        assert status == 200, getattr(response, "content", b"")[:500]
        return part["part_number"], etag

    if parallel:
        with ThreadPoolExecutor(4) as pool:
            return dict(pool.map(one, parts))
    return dict(one(part) for part in parts)


def complete_and_join(client, upload: dict) -> dict:
    """Completes the upload, runs the join task's service as the worker would, and
    returns the publish job the upload then names."""
    response = client.post(upload["complete_url"], format="json")
    assert response.status_code == 202, response.content
    assert response["Location"] == upload["url"]
    assert response.json()["status"] == "completing"
    resumable_upload_join(upload_id=upload["id"])
    state = client.get(upload["url"]).json()
    assert state["status"] == "completed", state
    job = client.get(state["job_url"]).json()
    assert job["url"] == state["job_url"]
    return job


def parallel_for(store_mode: str) -> bool:
    # The app-served part URL is reached through the test client, inside this test's
    # transaction: one thread. S3's presigned URLs take real concurrent requests.
    return not isinstance(get_object_store(), LocalObjectStore)


def test_a_file_sent_in_parallel_parts_is_published_and_its_bytes_hash_to_the_sha256_sent(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    response = begin(client, sha256=BIG_SHA, version="1.0.0", note="big day")
    assert response.status_code == 201, response.content
    upload = response.json()
    assert response["Location"] == upload["url"]
    assert upload["part_count"] == 3 and upload["part_size"] == 5 * MIB
    assert upload["missing_parts"] == [1, 2, 3] and upload["status"] == "open"

    urls = part_urls(client, upload)
    assert [p["part_number"] for p in urls] == [1, 2, 3]
    assert [p["size"] for p in urls] == [5 * MIB, 5 * MIB, len(BIG) - 10 * MIB]
    random.Random(4).shuffle(urls)
    etags = send(urls, BIG, upload["part_size"], parallel=parallel_for(store_mode))

    listed = client.get(upload["url"]).json()
    assert {p["part_number"]: p["etag"] for p in listed["parts"]} == etags
    assert listed["missing_parts"] == []

    job = complete_and_join(client, upload)
    assert job["status"] == "queued" and job["bytes_total"] == len(BIG)
    # Begun for a version, the upload was joined at that version's key: nothing to copy.
    queued = PublishJob.objects.get()
    assert queued.staging_key == queued.target_key and queued.target_version == "1.0.0"
    assert stored_keys("acme/staging/") == []
    assert unfinished_uploads() == []

    publish_job_run(job_id=job["id"])
    followed = client.get(job["url"]).json()
    assert followed["status"] == "succeeded", followed["message"]
    version = DatasetVersion.objects.get(is_current=True)
    assert (version.version, version.note, version.sha256) == ("1.0.0", "big day", BIG_SHA)
    digest = hashlib.sha256()
    with get_object_store().open(version.key) as stream:
        while chunk := stream.read(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == BIG_SHA
    assert version.key == queued.target_key
    assert stored_keys("acme/staging/") == [] and stored_keys("acme/v1/gold/") == [version.key]
    assert client.get(upload["url"]).json()["job_url"] == job["url"]


def test_an_upload_without_a_version_goes_to_staging_and_a_second_of_one_version_too(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    plain = begin(client).json()
    first = begin(client, version="2.0.0").json()
    second = begin(client, version="2.0.0").json()
    keys = {str(pk): key for pk, key in ResumableUpload.objects.values_list("id", "staging_key")}
    assert keys[plain["id"]].startswith("acme/staging/")
    assert keys[first["id"]].endswith("_v2.0.0.csv")
    # The first, still open, holds the version's key.
    assert keys[second["id"]].startswith("acme/staging/")


def test_an_upload_whose_version_another_publish_took_first_is_refused_and_keeps_theirs(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client, version="1.0.0").json()
    send(part_urls(client, upload), BIG, upload["part_size"], parallel=parallel_for(store_mode))
    key = ResumableUpload.objects.get().staging_key
    get_object_store().write(key, io.BytesIO(CSV))  # another publish's file, first

    response = client.post(upload["complete_url"], format="json")
    assert response.status_code == 202, response.content
    assert resumable_upload_join(upload_id=upload["id"]) is None

    state = client.get(upload["url"]).json()
    assert state["status"] == "refused"
    assert "took version 1.0.0" in state["error"]["message"]
    with get_object_store().open(key) as stream:
        assert stream.read() == CSV
    assert unfinished_uploads() == []
    assert PublishJob.objects.count() == 0


def test_after_a_break_a_new_client_asks_which_parts_arrived_and_sends_only_the_rest(
    store_mode, dataset, steward, as_user
):
    first = as_user(steward)
    upload = begin(first).json()
    urls = part_urls(first, upload)
    sent = send([urls[1]], BIG, upload["part_size"], parallel=False)  # then the line drops

    second = as_user(steward)  # another process, another token
    state = second.get(upload["url"]).json()
    assert [(p["part_number"], p["size"], p["etag"]) for p in state["parts"]] == [
        (2, 5 * MIB, sent[2])
    ]
    assert state["missing_parts"] == [1, 3]
    missing = part_urls(second, state)
    assert [p["part_number"] for p in missing] == [1, 3]
    send(missing, BIG, state["part_size"], parallel=parallel_for(store_mode))

    job = publish_job_run(job_id=complete_and_join(second, state)["id"])
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert DatasetVersion.objects.get(is_current=True).sha256 == BIG_SHA


def test_abort_leaves_no_multipart_upload_and_no_part_files(store_mode, dataset, steward, as_user):
    client = as_user(steward)
    upload = begin(client).json()
    urls = part_urls(client, upload, [1, 3])
    send(urls, BIG, upload["part_size"], parallel=False)
    assert len(unfinished_uploads()) == 1

    response = client.delete(upload["url"])
    assert response.status_code == 204
    assert unfinished_uploads() == []
    assert stored_keys("acme/") == []
    assert ResumableUpload.objects.get().status == "aborted"
    again = client.post(upload["part_urls_url"], {}, format="json")
    assert again.status_code == 409
    assert error_of(again)["details"]["status"] == "aborted"
    assert client.post(upload["complete_url"], format="json").status_code == 409
    assert PublishJob.objects.count() == 0


def test_the_sweeper_aborts_an_upload_left_unfinished_past_its_expiry(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    old = begin(client).json()
    send(part_urls(client, old, [1]), BIG, old["part_size"], parallel=False)
    fresh = begin(client, CSV).json()
    assert len(unfinished_uploads()) == 2

    later = timezone.now() + timedelta(hours=settings.RESUMABLE_UPLOAD_EXPIRE_HOURS - 1)
    assert resumable_uploads_sweep(now=later) == 0
    ResumableUpload.objects.filter(pk=fresh["id"]).update(
        expires_at=timezone.now() + timedelta(days=2)
    )
    expired = timezone.now() + timedelta(hours=settings.RESUMABLE_UPLOAD_EXPIRE_HOURS, minutes=1)
    assert resumable_uploads_sweep(now=expired) == 1

    assert client.get(old["url"]).json()["status"] == "expired"
    assert client.get(fresh["url"]).json()["status"] == "open"
    assert len(unfinished_uploads()) == 1
    assert resumable_uploads_sweep(now=expired) == 0  # once is enough
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "versioning.sweep_resumable_uploads" in tasks


# --- Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, -5, "max+1"])
def test_a_size_of_zero_or_above_the_upload_limit_is_refused(size, dataset, steward, as_user):
    size = settings.MAX_UPLOAD_BYTES + 1 if size == "max+1" else size
    response = as_user(steward).post(BEGIN, {"filename": "day.csv", "size": size}, format="json")
    assert response.status_code == 400, response.content
    assert "size" in error_of(response)["message"]
    assert ResumableUpload.objects.count() == 0 and unfinished_uploads() == []


def test_missing_or_malformed_fields_name_what_is_wrong(dataset, steward, as_user):
    client = as_user(steward)
    for body, word in (
        ({"size": 10}, "filename"),
        ({"filename": "a.csv"}, "size"),
        ({"filename": "a.csv", "size": 10, "sha256": "xyz"}, "sha256"),
        ({"filename": "sheet.xlsx", "size": 10}, "excel"),
        ({"filename": "a.csv", "size": 10, "version": "0.0.x"}, "version"),
    ):
        response = client.post(BEGIN, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert word in str(error_of(response)).lower(), (body, response.content)
    assert ResumableUpload.objects.count() == 0 and unfinished_uploads() == []


def test_a_part_number_out_of_range_is_refused(store_mode, dataset, steward, as_user):
    client = as_user(steward)
    upload = begin(client).json()
    for numbers in ([0], [4], [1, 10_001]):
        response = client.post(upload["part_urls_url"], {"parts": numbers}, format="json")
        assert response.status_code == 400, numbers
        assert error_of(response)["details"]["part_count"] == 3


def test_a_part_of_the_wrong_size_is_refused_as_it_arrives_at_the_app(
    local_store, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client).json()
    [part] = part_urls(client, upload, [1])
    status, _, response = put_part(part["url"], BIG[: 5 * MIB - 1])
    assert status == 400
    assert error_of(response)["details"]["expected_size"] == 5 * MIB
    assert client.get(upload["url"]).json()["parts"] == []


@pytest.mark.s3
def test_a_part_of_the_wrong_size_in_storage_is_named_at_complete(dataset, steward, as_user):
    settings.RESUMABLE_PART_BYTES = 5 * MIB
    client = as_user(steward)
    upload = begin(client).json()
    urls = part_urls(client, upload)
    send(urls[:2], BIG, upload["part_size"], parallel=True)
    status, _, _ = put_part(urls[2]["url"], BIG[-100:])  # S3 takes it; the size is wrong
    assert status == 200
    response = client.post(upload["complete_url"], format="json")
    assert response.status_code == 400
    [wrong] = error_of(response)["details"]["wrong_size_parts"]
    assert wrong == {"part_number": 3, "size": 100, "expected_size": len(BIG) - 10 * MIB}
    assert client.get(upload["url"]).json()["status"] == "open"  # send it again, complete
    send([urls[2]], BIG, upload["part_size"], parallel=False)
    assert client.post(upload["complete_url"], format="json").status_code == 202


def test_a_part_url_with_a_bad_or_expired_signature_is_refused(
    local_store, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client).json()
    [part] = part_urls(client, upload, [1])
    data = BIG[: 5 * MIB]
    row = ResumableUpload.objects.get()
    past = int(timezone.now().timestamp()) - 10
    expired_sig = part_signature(row.staging_key, row.storage_upload_id, 1, 5 * MIB, past)
    path = f"/api/v1/upload-parts/{row.storage_upload_id}/1/"
    for url in (
        part["url"].replace("signature=", "signature=0"),
        part["url"].replace("length=5242880", "length=5242881"),
        part["url"].replace("/1/?", "/2/?"),
        f"{settings.PUBLIC_BASE_URL}{path}?length={5 * MIB}&expires={past}&signature={expired_sig}",
    ):
        status, _, response = put_part(url, data)
        assert status == 403, url
        assert "signature" in error_of(response)["message"]
    assert client.get(upload["url"]).json()["parts"] == []
    assert put_part(part["url"], data)[0] == 200


def test_completing_with_parts_missing_names_them_and_keeps_the_upload_open(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client).json()
    send(part_urls(client, upload, [2]), BIG, upload["part_size"], parallel=False)
    response = client.post(upload["complete_url"], format="json")
    assert response.status_code == 400
    assert error_of(response)["details"]["missing_parts"] == [1, 3]
    assert client.get(upload["url"]).json()["status"] == "open"
    assert PublishJob.objects.count() == 0


def test_a_sha256_mismatch_is_refused_where_the_bytes_are_read_and_nothing_is_kept(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    other = hashlib.sha256(b"other bytes").hexdigest()
    upload = begin(client, sha256=other).json()
    send(part_urls(client, upload), BIG, upload["part_size"], parallel=False)
    response = client.post(upload["complete_url"], format="json")
    assert response.status_code == 202
    job = resumable_upload_join(upload_id=upload["id"])
    state = client.get(upload["url"]).json()
    mismatch = {"expected_sha256": other, "actual_sha256": BIG_SHA}
    if isinstance(get_object_store(), S3ObjectStore):
        # S3 joins the parts itself, unread: the job's one read of the object checks it.
        assert state["status"] == "completed"
        job = publish_job_run(job_id=job.pk)
        assert (job.status, job.error_code) == (JobStatus.FAILED, "digest_mismatch")
        assert job.error_details == mismatch
    else:
        # Local parts are read to be joined, and hashed on the way: refused at the join.
        assert job is None
        assert state["status"] == "refused" and state["job_url"] is None
        assert state["error"]["code"] == "digest_mismatch"
        assert state["error"]["details"] == mismatch
        assert PublishJob.objects.count() == 0
    assert stored_keys("acme/") == [] and unfinished_uploads() == []
    assert not DatasetVersion.objects.exists()
    assert client.post(upload["complete_url"], format="json").status_code == 409


def test_completing_twice_is_refused_and_queues_one_job(store_mode, dataset, steward, as_user):
    client = as_user(steward)
    upload = begin(client, CSV).json()
    [part] = part_urls(client, upload)
    assert part["size"] == len(CSV)
    send([part], CSV, upload["part_size"], parallel=False)
    assert client.post(upload["complete_url"], format="json").status_code == 202
    # Again while it waits for its worker: the task is sent again, nothing more.
    waiting = client.post(upload["complete_url"], format="json")
    assert waiting.status_code == 202 and waiting.json()["status"] == "completing"
    assert client.delete(upload["url"]).status_code == 409
    assert resumable_upload_join(upload_id=upload["id"]) is not None
    assert resumable_upload_join(upload_id=upload["id"]) is None  # a task sent twice
    again = client.post(upload["complete_url"], format="json")
    assert again.status_code == 409
    assert error_of(again)["details"]["status"] == "completed"
    assert PublishJob.objects.count() == 1


def test_another_organisations_upload_is_404_like_one_that_does_not_exist(
    dataset, steward, outsider, as_user
):
    upload = begin(as_user(steward), CSV).json()
    stranger = as_user(outsider)
    missing = upload["url"].replace(upload["id"][:8], "00000000")
    for url in (upload["url"], missing):
        answers = [
            stranger.get(url),
            stranger.delete(url),
            stranger.post(f"{url}part-urls/", {}, format="json"),
            stranger.post(f"{url}complete/", format="json"),
        ]
        for response in answers:
            assert response.status_code == 404, (url, response.content)
            assert error_of(response)["message"].startswith("No upload ")
    assert ResumableUpload.objects.get().status == "open"


def test_a_device_token_uploads_to_its_own_dataset_with_plain_options_only(
    dataset, steward, as_user, acme, system
):
    from catalog.services import dataset_create

    other = dataset_create(organization=acme, layer="gold", name="other", actor=system)
    device = as_user(steward, scopes=["publish"], dataset=dataset)
    assert begin(device, CSV).status_code == 201
    refused = begin(device, CSV, draft=True)
    assert refused.status_code == 403
    assert "device token" in error_of(refused)["message"]
    elsewhere = as_user(steward, scopes=["publish"], dataset=other)
    assert begin(elsewhere, CSV).status_code == 404


def test_parts_grow_past_the_setting_only_when_a_file_would_need_over_10000(settings):
    from versioning.services.resumable import part_size_for

    settings.RESUMABLE_PART_BYTES = 64 * MIB
    assert part_size_for(1) == 64 * MIB
    assert part_size_for(10_000 * 64 * MIB) == 64 * MIB
    assert part_size_for(10_000 * 64 * MIB + 1) == 65 * MIB
    assert -(-(50 * 1024**3) // part_size_for(50 * 1024**3)) <= 10_000


def test_the_admin_lists_uploads_shows_the_parts_received_and_a_steward_aborts_one(
    store_mode, dataset, steward, viewer, outsider, as_user, client
):
    from django.contrib.messages import get_messages
    from django.urls import reverse

    from catalog.models import AuditEntry

    upload = begin(as_user(steward)).json()
    send(part_urls(as_user(steward), upload, [2]), BIG, upload["part_size"], parallel=False)
    changelist = reverse("admin:versioning_resumableupload_changelist")
    page = reverse("admin:versioning_resumableupload_change", args=[upload["id"]])

    client.force_login(outsider)
    assert b"day.csv" not in client.get(changelist).content
    assert client.get(page).status_code in (302, 404)

    client.force_login(steward)
    listing = client.get(changelist)
    assert listing.status_code == 200 and b"day.csv" in listing.content
    detail = client.get(page).content.decode().replace("\xa0", " ")
    assert "1 of 3 parts, 5.0 MB of 11.0 MB" in detail, detail

    # A viewer of the organisation sees the upload but may not abort it.
    client.force_login(viewer)
    refused = client.post(changelist, {"action": "abort", "_selected_action": [upload["id"]]})
    assert "steward" in " ".join(str(m) for m in get_messages(refused.wsgi_request))
    assert ResumableUpload.objects.get().status == "open"

    client.force_login(steward)
    client.post(changelist, {"action": "abort", "_selected_action": [upload["id"]]})
    assert ResumableUpload.objects.get().status == "aborted"
    assert unfinished_uploads() == []
    assert AuditEntry.objects.filter(action="version.upload_aborted").count() == 1
    assert "—" in client.get(page).content.decode()  # nothing received any more


# --- The copy to the version's key, started while the file is read ---------------------


def keys_of_version(version: str) -> list[str]:
    return [key for key in stored_keys("acme/v1/gold/") if key.endswith(f"_v{version}.csv")]


def test_an_upload_without_a_version_is_queued_holding_its_likely_versions_key_and_lands_there(
    store_mode, published, steward, as_user
):
    client = as_user(steward)
    upload = begin(client, sha256=BIG_SHA).json()
    send(part_urls(client, upload), BIG, upload["part_size"], parallel=parallel_for(store_mode))
    queued = PublishJob.objects.get(pk=complete_and_join(client, upload)["id"])
    # Joined at a staging key; the job holds the key of the next patch (same columns).
    assert queued.staging_key.startswith("acme/staging/")
    assert queued.target_version == "1.0.1" and queued.target_key.endswith("_v1.0.1.csv")
    assert version_key_held(queued.target_key)

    job = publish_job_run(job_id=queued.pk)
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = DatasetVersion.objects.get(is_current=True)
    assert (version.version, version.key, version.sha256) == ("1.0.1", queued.target_key, BIG_SHA)
    with get_object_store().open(version.key) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == BIG_SHA
    assert stored_keys("acme/staging/") == [] and keys_of_version("1.0.1") == [version.key]


def test_the_copy_ahead_holds_the_staged_bytes_and_is_not_made_over_an_object(
    store_mode, published, steward, as_user
):
    client = as_user(steward)
    upload = begin(client).json()
    send(part_urls(client, upload), BIG, upload["part_size"], parallel=parallel_for(store_mode))
    queued = PublishJob.objects.get(pk=complete_and_join(client, upload)["id"])
    store = get_object_store()

    ahead = _copy_ahead(queued, store)
    assert ahead is not None
    ahead.result(timeout=60)
    with store.open(queued.target_key) as stream:
        assert stream.read() == BIG
    # Once something is at the key (an earlier attempt's copy), none is started.
    assert _copy_ahead(queued, store) is None
    # Nor for a job whose file is at its version's key already.
    at_key = PublishJob(staging_key=queued.target_key, target_key=queued.target_key)
    assert _copy_ahead(at_key, store) is None
    job = publish_job_run(job_id=queued.pk)  # the attempt finds it there, checks it, reuses it
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert DatasetVersion.objects.get(is_current=True).key == queued.target_key


def test_a_wrong_guess_of_the_version_leaves_no_copy_at_its_key(
    store_mode, published, steward, as_user
):
    lines = BIG.split(b"\n")[:-1]
    wider = b"\n".join([lines[0] + b",region"] + [line + b",north" for line in lines[1:]]) + b"\n"
    client = as_user(steward)
    upload = begin(client, wider).json()
    send(part_urls(client, upload), wider, upload["part_size"], parallel=parallel_for(store_mode))
    queued = PublishJob.objects.get(pk=complete_and_join(client, upload)["id"])
    assert queued.target_version == "1.0.1"  # the guess: a data-only change

    job = publish_job_run(job_id=queued.pk)
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = DatasetVersion.objects.get(is_current=True)
    assert version.version == "1.1.0" and version.key.endswith("_v1.1.0.csv")
    assert keys_of_version("1.0.1") == [] and stored_keys("acme/staging/") == []


def test_a_refused_file_leaves_neither_its_staged_object_nor_the_copy_ahead(
    store_mode, published, steward, as_user
):
    client = as_user(steward)
    other = hashlib.sha256(b"other bytes").hexdigest()
    upload = begin(client, sha256=other).json()
    send(part_urls(client, upload), BIG, upload["part_size"], parallel=parallel_for(store_mode))
    complete = client.post(upload["complete_url"], format="json")
    assert complete.status_code == 202
    queued = resumable_upload_join(upload_id=upload["id"])
    if queued is None:
        return  # local parts are hashed as they are joined: refused before any job
    assert queued.target_key.endswith("_v1.0.1.csv")
    job = publish_job_run(job_id=queued.pk)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "digest_mismatch")
    assert keys_of_version("1.0.1") == [] and stored_keys("acme/staging/") == []
    assert DatasetVersion.objects.get(is_current=True).version == "1.0.0"


def test_no_key_is_held_ahead_when_another_upload_holds_the_likely_version(
    store_mode, published, steward, as_user
):
    client = as_user(steward)
    holder = begin(client, version="1.0.1").json()  # open, at 1.0.1's key
    upload = begin(client, CSV).json()
    send(part_urls(client, upload), CSV, upload["part_size"], parallel=False)
    queued = PublishJob.objects.get(pk=complete_and_join(client, upload)["id"])
    assert (queued.target_version, queued.target_key) == ("", "")
    assert client.get(holder["url"]).json()["status"] == "open"
