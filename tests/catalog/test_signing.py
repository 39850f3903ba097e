"""Presigned GETs signed without botocore's per-call machinery: the very URL botocore
makes for the same inputs and second, and one the S3 server accepts. (moto's server
does not check signatures, so equality with botocore is what vouches for the signature;
the download vouches for the address, the key's encoding and the parameters.)"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config

from catalog.signing import QuerySigner, signer_for, signer_from_botocore
from catalog.storage import get_object_store

pytestmark = pytest.mark.s3

KEYS = [
    "acme/v1/gold/txn_daily/txn_daily_2024-08-10_v1.0.0.csv",
    "acme/v1/gold/a b+c/ünïcode~(1)!*'.csv",
    "x/%41/semi;colon=equals&amp?.parquet",
]


def signed_second(url: str) -> datetime:
    stamp = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def botocore_url(client, bucket: str, key: str, disposition: str | None, ttl: int) -> str:
    params = {"Bucket": bucket, "Key": key}
    if disposition:
        params["ResponseContentDisposition"] = disposition
    return client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)


def offline_client(**kwargs):
    """A client that only signs (no request is sent)."""
    style = kwargs.pop("style", "path")
    return boto3.client(
        "s3",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        config=Config(s3={"addressing_style": style}, signature_version="s3v4"),
        **kwargs,
    )


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("disposition", [None, 'attachment; filename="ünï code.csv"'])
def test_the_signer_makes_the_url_botocore_makes_for_the_same_inputs_and_second(key, disposition):
    store = get_object_store()
    signer = signer_for(
        store.client, store.bucket, access_key="testing", secret_key="testing", session_token=None
    )
    assert signer is not None
    for ttl in (60, 3600, 604800):
        expected = botocore_url(store.client, store.bucket, key, disposition, ttl)
        ours = signer.presign_get(
            key, expires_in=ttl, signed_at=signed_second(expected), disposition=disposition
        )
        assert ours == expected


@pytest.mark.parametrize(
    "client_kwargs",
    [
        {"region_name": "eu-west-3"},
        {"region_name": "us-east-1", "style": "virtual"},
        {"region_name": "ap-southeast-1", "aws_session_token": "FwoGZXIvYXdzE/+=token"},
        {"region_name": "us-east-1", "endpoint_url": "https://minio.example.com:9443"},
        {"region_name": "us-east-1", "endpoint_url": "https://minio.example.com:443"},
    ],
)
def test_the_signer_matches_botocore_for_other_regions_styles_endpoints_and_session_tokens(
    client_kwargs,
):
    token = client_kwargs.get("aws_session_token")
    client = offline_client(**client_kwargs)
    signer = signer_from_botocore(
        client,
        "my-bucket",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token=token,
    )
    assert signer is not None
    for key in KEYS:
        expected = botocore_url(client, "my-bucket", key, 'attachment; filename="a.csv"', 900)
        ours = signer.presign_get(
            key,
            expires_in=900,
            signed_at=signed_second(expected),
            disposition='attachment; filename="a.csv"',
        )
        assert ours == expected


def test_the_signer_is_not_used_when_it_would_sign_differently_from_botocore():
    client = offline_client(region_name="eu-west-3")
    # A secret that is not the client's: the probe URLs differ, so botocore keeps signing.
    assert (
        signer_from_botocore(client, "b", secret_key="not-the-secret", session_token=None) is None
    )
    # Without static credentials (botocore's chain may rotate them), botocore signs.
    assert signer_for(client, "b", access_key=None, secret_key=None) is None


def test_a_signing_key_is_derived_once_a_day():
    signer = QuerySigner(
        base="http://h",
        host="h",
        prefix="/b/",
        region="us-east-1",
        access_key="a",
        secret_key="s",
    )
    day = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    signer.presign_get("k", expires_in=60, signed_at=day)
    first = signer._day_keys
    signer.presign_get("k", expires_in=60, signed_at=day + timedelta(hours=5))
    assert signer._day_keys is first
    signer.presign_get("k", expires_in=60, signed_at=day + timedelta(days=1))
    assert signer._day_keys[0] == "20261202" and signer._day_keys[1] != first[1]


@pytest.mark.parametrize("key", KEYS)
def test_the_s3_server_serves_the_bytes_at_a_url_the_store_signs(key):
    store = get_object_store()
    payload = f"bytes of {key}\n".encode() * 100
    store.write(key, io.BytesIO(payload))
    signed = store.signed_url(key, ttl=300, filename=key.rsplit("/", 1)[-1])
    assert "X-Amz-Signature=" in signed.url
    assert signed.expires_at == signed_second(signed.url) + timedelta(seconds=300)
    assert abs(signed_second(signed.url).timestamp() - time.time()) < 5

    fetched = requests.get(signed.url, timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == payload
    assert "attachment" in fetched.headers.get("Content-Disposition", "")
