"""The API's cast: clients, tokens, published datasets."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from catalog.audit import Actor
from catalog.storage import get_object_store

CSV = (
    b"date_key,store_id,revenue,is_holiday\n"
    b"2024-08-10,ST0001,10.5,false\n"
    b"2024-08-10,ST0002,7,true\n"
    b"2024-08-11,ST0001,3.25,false\n"
)


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate-limit and lock-out counters live in the shared cache: start each test at 0."""
    cache.clear()
    yield


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def make_token(system):
    from catalog.tokens import token_create

    def make(user, *, scopes=("read",), dataset=None, **kwargs) -> str:
        _, raw = token_create(
            user=user,
            name=kwargs.pop("name", "test"),
            scopes=list(scopes),
            dataset=dataset,
            actor=Actor(user=user, via="api"),
            **kwargs,
        )
        return raw

    return make


@pytest.fixture
def as_user(make_token):
    """An API client authenticated with a token of `user` with `scopes`."""

    def client(user, *, scopes=("read", "publish", "admin"), dataset=None) -> APIClient:
        c = APIClient()
        raw = make_token(user, scopes=scopes, dataset=dataset)
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        c.raw_token = raw
        return c

    return client


@pytest.fixture
def published(dataset, publish):
    """acme's private gold/txn_daily with version 1.0.0 published."""
    job = publish(dataset, CSV)
    assert job.status == "succeeded", job.message
    return dataset


@pytest.fixture
def with_columnar():
    from versioning.columnar import columnar_copy_make
    from versioning.models import DatasetVersion

    def make(dataset):
        for version in DatasetVersion.objects.filter(dataset=dataset).select_related(
            "dataset__organization"
        ):
            key = columnar_copy_make(version=version)
            DatasetVersion.objects.filter(pk=version.pk).update(columnar_key=key)

    return make


def use_local_files(settings, tmp_path) -> None:
    """The datasets' storage: files under `tmp_path`, whatever the mode."""
    settings.STORAGES = {
        **settings.STORAGES,
        "datasets": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "objects"},
        },
    }


@pytest.fixture(params=["configured", "local"])
def store_mode(request, settings, tmp_path):
    """For resumable uploads: the configured store (S3 in the services mode), or local
    files; parts of 5 MiB."""
    if request.param == "local":
        use_local_files(settings, tmp_path)
    settings.RESUMABLE_PART_BYTES = 5 * 1024**2
    return request.param


@pytest.fixture
def local_store(settings, tmp_path):
    """For resumable uploads: local files whatever the mode; parts of 5 MiB."""
    use_local_files(settings, tmp_path)
    settings.RESUMABLE_PART_BYTES = 5 * 1024**2
    return get_object_store()


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def assert_reads_as_serializer(read, serializer_class, params) -> None:
    """`read(params)`, a view's direct reading of its query parameters, gives what
    `serializer_class` validates, or refuses with the serializer's own errors."""
    from rest_framework.exceptions import ValidationError

    expected = serializer_class(data=params)
    if expected.is_valid():
        assert read(params) == dict(expected.validated_data)
    else:
        with pytest.raises(ValidationError) as refused:
            read(params)
        assert refused.value.detail == expected.errors


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    """A multipart body with the parts in exactly this order (name, filename, bytes)."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def post_multipart(
    client,
    body: bytes,
    boundary: str = "XyZ",
    url: str = "/api/v1/datasets/gold/txn_daily/versions/",
    **extra,
):
    return client.generic(
        "POST", url, body, content_type=f"multipart/form-data; boundary={boundary}", **extra
    )
