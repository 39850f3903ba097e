"""Resumable uploads begun with per-part CRC32s (`"checksum": "crc32"`): each part's URL
is asked for with the part's CRC32, the PUT carries it in `x-amz-checksum-crc32`, and
storage takes exactly those bytes (S3: the header is signed into the presigned URL;
embedded: the app checks the CRC32 as the part arrives). Without the option nothing
changes for clients; every bad input is refused in the one error shape.

moto's S3 server checks neither presigned signatures nor checksum headers, so in the
services mode the refusal of another CRC32 is shown on the URL itself: it is verified
here as AWS S3 and MinIO verify a presigned request (Signature Version 4), and passes
only with the header value it was asked for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import zlib
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests
from django.conf import settings
from rest_framework.test import APIClient

from catalog.storage import LocalObjectStore, S3ObjectStore, get_object_store
from tests.api.conftest import error_of
from tests.api.test_resumable_uploads import (
    BIG,
    BIG_SHA,
    MIB,
    begin,
    complete_and_join,
    unfinished_uploads,
)
from versioning.models import DatasetVersion, JobStatus, PublishJob, ResumableUpload
from versioning.services import publish_job_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

HEADER = "x-amz-checksum-crc32"
CSV_SMALL = b"date_key,store_id,revenue\n2024-08-01,ST1,10.5\n2024-08-02,ST2,11.25\n"


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def piece(number: int, part_size: int, data: bytes = BIG) -> bytes:
    return data[(number - 1) * part_size : number * part_size]


def checksum_urls(client, upload: dict, numbers: list[int], data: bytes = BIG) -> list[dict]:
    body = {
        "parts": [
            {"part_number": n, "crc32": crc32(piece(n, upload["part_size"], data))} for n in numbers
        ]
    }
    response = client.post(upload["part_urls_url"], body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["parts"]


def put(url: str, data: bytes, headers: dict[str, str]):
    """PUT one part with its headers: to S3 over the wire, or to the app."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if url.startswith(base + "/api/"):
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        return APIClient().generic(
            "PUT", url[len(base) :], data, content_type="application/octet-stream", **extra
        )
    return requests.put(url, data=data, headers=headers, timeout=60)


def sigv4_accepts(url: str, headers: dict[str, str]) -> bool:
    """Whether a PUT of `url` carrying `headers` matches the URL's signature, checked
    as S3 checks a presigned request: the canonical request over the signed headers'
    values as sent, signed with the key derived from the secret."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = query.pop("X-Amz-Signature")
    signed = query["X-Amz-SignedHeaders"].split(";")
    sent = {"host": parts.netloc} | {name.lower(): value for name, value in headers.items()}
    if any(name not in sent for name in signed):
        return False
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    canonical = "\n".join(
        [
            "PUT",
            parts.path,
            canonical_query,
            "".join(f"{name}:{sent[name].strip()}\n" for name in signed),
            query["X-Amz-SignedHeaders"],
            "UNSIGNED-PAYLOAD",
        ]
    )
    _access, day, region, service, _ = query["X-Amz-Credential"].split("/")
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            query["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + get_object_store().storage.secret_key).encode()
    for step in (day, region, service, "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def test_parts_sent_with_their_crc32_are_published_and_storage_keeps_one_per_part(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    response = begin(client, sha256=BIG_SHA, checksum="crc32")
    assert response.status_code == 201, response.content
    upload = response.json()
    assert upload["checksum"] == "crc32" and upload["part_count"] == 3
    size = upload["part_size"]

    urls = checksum_urls(client, upload, [1, 2, 3])
    expected = {n: crc32(piece(n, size)) for n in (1, 2, 3)}
    assert {p["part_number"]: p["headers"] for p in urls} == {
        n: {HEADER: value} for n, value in expected.items()
    }
    random.Random(7).shuffle(urls)
    for part in urls:
        answer = put(part["url"], piece(part["part_number"], size), part["headers"])
        assert answer.status_code == 200, answer.content[:500]

    listed = client.get(upload["url"]).json()
    assert listed["missing_parts"] == []
    store = get_object_store()
    if isinstance(store, LocalObjectStore):
        assert {p["part_number"]: p["crc32"] for p in listed["parts"]} == expected

    queued = complete_and_join(client, upload)
    assert unfinished_uploads() == []
    if isinstance(store, S3ObjectStore):
        # Declared CRC32 at the start, the object's checksum is composed of the parts'
        # (COMPOSITE), as for boto3's upload_file: no checksum over the whole object.
        head = store.client.head_object(
            Bucket=store.bucket,
            Key=PublishJob.objects.get(pk=queued["id"]).staging_key,
            ChecksumMode="ENABLED",
        )
        joined = b"".join(base64.b64decode(expected[n]) for n in (1, 2, 3))
        # The CRC32 of the parts' CRC32s (AWS adds "-3", the number of parts).
        assert head["ChecksumCRC32"].removesuffix("-3") == crc32(joined)
        assert "ChecksumCRC64NVME" not in head
    job = publish_job_run(job_id=queued["id"])
    assert job.status == JobStatus.SUCCEEDED, job.message
    version = DatasetVersion.objects.get(is_current=True)
    assert version.sha256 == BIG_SHA and version.size_bytes == len(BIG)


def test_without_the_option_parts_go_without_headers_as_before(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client, CSV_SMALL).json()
    assert upload["checksum"] == ""
    [part] = client.post(upload["part_urls_url"], {}, format="json").json()["parts"]
    assert part["headers"] == {}
    assert HEADER not in part["url"] and "crc32" not in part["url"]
    assert put(part["url"], CSV_SMALL, {}).status_code == 200
    job = publish_job_run(job_id=complete_and_join(client, upload)["id"])
    assert job.status == JobStatus.SUCCEEDED, job.message


def test_a_damaged_part_is_refused_by_the_app_and_nothing_of_it_is_kept(
    local_store, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client, checksum="crc32").json()
    [part] = checksum_urls(client, upload, [1])
    good = piece(1, upload["part_size"])
    damaged = bytearray(good)
    damaged[MIB] ^= 0x01  # one bit flipped on the way
    response = put(part["url"], bytes(damaged), part["headers"])
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "digest_mismatch"
    assert error["details"] == {
        "part_number": 1,
        "expected_crc32": part["headers"][HEADER],
        "crc32": crc32(bytes(damaged)),
    }
    assert client.get(upload["url"]).json()["parts"] == []
    # The header must be the one the URL was asked with, as S3 wants its signed value.
    other = put(part["url"], good, {HEADER: crc32(b"other")})
    assert other.status_code == 403 and HEADER in error_of(other)["message"]
    # The CRC32 in the URL is signed: changing it breaks the URL.
    forged = part["url"].replace(quote(part["headers"][HEADER], safe=""), quote(crc32(b"x")))
    assert forged != part["url"]
    assert put(forged, good, {}).status_code == 403
    assert client.get(upload["url"]).json()["parts"] == []

    answer = put(part["url"], good, part["headers"])
    assert answer.status_code == 200
    assert answer[HEADER] == part["headers"][HEADER]
    assert client.get(upload["url"]).json()["parts"][0]["crc32"] == part["headers"][HEADER]


@pytest.mark.s3
def test_a_presigned_part_url_takes_only_the_crc32_it_was_asked_with(
    dataset, steward, as_user, settings
):
    settings.RESUMABLE_PART_BYTES = 5 * MIB
    client = as_user(steward)
    upload = begin(client, checksum="crc32").json()
    [part] = checksum_urls(client, upload, [1])
    value = part["headers"][HEADER]
    query = dict(parse_qsl(urlsplit(part["url"]).query))
    # The value is a signed header, not a query parameter the client could leave out.
    assert HEADER in query["X-Amz-SignedHeaders"].split(";")
    assert value not in part["url"] and HEADER not in query
    assert sigv4_accepts(part["url"], {HEADER: value})
    assert not sigv4_accepts(part["url"], {HEADER: crc32(b"damaged part")})
    assert not sigv4_accepts(part["url"], {})
    # A URL asked for without the option signs no checksum header.
    plain = begin(client).json()
    [bare] = client.post(plain["part_urls_url"], {"parts": [1]}, format="json").json()["parts"]
    assert sigv4_accepts(bare["url"], {})
    # The upload was created declaring CRC32, so storage wants each part's CRC32.
    row = ResumableUpload.objects.get(pk=upload["id"])
    store = get_object_store()
    listed = store.client.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
    declared = {u["UploadId"]: u.get("ChecksumAlgorithm") for u in listed}
    assert declared[row.storage_upload_id] == "CRC32"
    assert declared[ResumableUpload.objects.get(pk=plain["id"]).storage_upload_id] != "CRC32"


# --- Bad input -------------------------------------------------------------------------


def test_an_unknown_checksum_is_refused_at_the_start(dataset, steward, as_user):
    client = as_user(steward)
    for value in ("md5", "CRC64NVME", 32):
        response = begin(client, checksum=value)
        assert response.status_code == 400, (value, response.content)
        assert "checksum" in str(error_of(response)).lower()
    assert ResumableUpload.objects.count() == 0 and unfinished_uploads() == []


def test_part_urls_of_a_checksum_upload_without_each_parts_crc32_are_refused(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client, checksum="crc32").json()
    one = crc32(piece(1, upload["part_size"]))
    for body, without in (
        ({}, []),
        ({"parts": [1, 2]}, [1, 2]),
        ({"parts": [{"part_number": 1, "crc32": one}, 3]}, [3]),
        ({"parts": [{"part_number": 2}]}, [2]),
    ):
        response = client.post(upload["part_urls_url"], body, format="json")
        assert response.status_code == 400, (body, response.content)
        error = error_of(response)
        assert '"checksum": "crc32"' in error["message"]
        assert error["details"]["parts_without_crc32"] == without


@pytest.mark.parametrize("value", ["abc", "AAAAAAAA", "AAAAAA", "yZRlqg==x", "AAAAAAA=", 12])
def test_a_malformed_crc32_is_refused(value, store_mode, dataset, steward, as_user):
    client = as_user(steward)
    upload = begin(client, checksum="crc32").json()
    body = {"parts": [{"part_number": 1, "crc32": value}]}
    response = client.post(upload["part_urls_url"], body, format="json")
    assert response.status_code == 400, response.content
    assert "crc32" in str(error_of(response)).lower()


def test_a_crc32_for_an_upload_begun_without_checksums_is_refused(
    store_mode, dataset, steward, as_user
):
    client = as_user(steward)
    upload = begin(client).json()
    body = {"parts": [{"part_number": 1, "crc32": crc32(piece(1, upload["part_size"]))}]}
    response = client.post(upload["part_urls_url"], body, format="json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert "without per-part checksums" in error["message"]
    assert error["details"]["field"] == "crc32"


@pytest.mark.parametrize("body", [{"parts": [{"number": 1}]}, {"parts": [True]}, {"parts": [[1]]}])
def test_a_part_asked_for_in_another_shape_is_refused(body, dataset, steward, as_user):
    client = as_user(steward)
    upload = begin(client, checksum="crc32").json()
    response = client.post(upload["part_urls_url"], body, format="json")
    assert response.status_code == 400, response.content
    assert "part_number" in str(error_of(response))
