"""Rows with column selection (from the columnar copy and from the file itself), and the
manifest with its ETag."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.services import dataset_create
from tests.api.conftest import CSV, assert_reads_as_serializer, error_of
from versioning import columnar
from versioning.manifest import manifest_checksum
from versioning.models import DatasetVersion

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

ROWS = "/api/v1/datasets/gold/txn_daily/rows/"


def big_csv(rows: int) -> bytes:
    lines = [b"n,word,flag,day"]
    lines += [
        f"{i},w{i % 7},{'true' if i % 2 else 'false'},2024-08-10".encode() for i in range(rows)
    ]
    return b"\n".join(lines) + b"\n"


@pytest.fixture(params=["columnar", "streaming"])
def rows_source(request, dataset, publish, with_columnar, monkeypatch):
    """gold/txn_daily with 1,000 rows, read from the columnar copy (row groups of 64
    rows, so offsets cross groups) or straight from the CSV."""
    monkeypatch.setattr(columnar, "ROW_GROUP_ROWS", 64)
    publish(dataset, big_csv(1000))
    if request.param == "columnar":
        with_columnar(dataset)
        version = DatasetVersion.objects.get(is_current=True)
        assert version.columnar_key
        metadata = pq.read_metadata(
            io.BytesIO(columnar.get_object_store().open(version.columnar_key).read())
        )
        assert metadata.num_row_groups == 16
    return dataset


def test_rows_with_column_selection_limit_and_offset(rows_source, viewer, as_user):
    response = as_user(viewer).get(f"{ROWS}?columns=word,n&limit=3&offset=130")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1000 and body["columns"] == ["word", "n"]
    assert body["results"] == [
        {"word": "w4", "n": 130},
        {"word": "w5", "n": 131},
        {"word": "w6", "n": 132},
    ]
    assert "offset=133" in body["next"]
    assert "offset=127" in body["previous"]


def test_rows_across_row_groups_and_at_the_end(rows_source, viewer, as_user):
    client = as_user(viewer)
    body = client.get(f"{ROWS}?columns=n&limit=200&offset=60").json()
    assert [r["n"] for r in body["results"]] == list(range(60, 260))
    end = client.get(f"{ROWS}?columns=n,flag,day&limit=10&offset=995").json()
    assert end["results"][-1] == {"n": 999, "flag": True, "day": "2024-08-10"}
    assert end["next"] is None
    assert client.get(f"{ROWS}?offset=1000").json()["results"] == []


def test_rows_as_csv_and_ndjson(rows_source, viewer, as_user):
    client = as_user(viewer)
    response = client.get(f"{ROWS}?columns=n,flag&limit=2&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response.content == b"n,flag\n0,false\n1,true\n"
    assert response["X-Total-Count"] == "1000"
    response = client.get(f"{ROWS}?columns=n&limit=2&offset=5&format=ndjson")
    assert response["Content-Type"] == "application/x-ndjson"
    assert response.content == b'{"n":5}\n{"n":6}\n'


def test_an_unknown_column_names_the_valid_ones(published, viewer, as_user):
    response = as_user(viewer).get(f"{ROWS}?columns=store_id,password")
    assert response.status_code == 400
    error = error_of(response)
    assert error["details"]["unknown"] == ["password"]
    assert error["details"]["valid_columns"] == ["date_key", "store_id", "revenue", "is_holiday"]
    assert "date_key" in error["message"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=10001",
        "limit=-1",
        "limit=ten",
        "offset=-1",
        "offset=4",
        "offset=99999999999999999999",
        "format=xml",
        "version=%00",
    ],
)
def test_limit_offset_and_format_out_of_range_are_refused(published, viewer, as_user, query):
    response = as_user(viewer).get(f"{ROWS}?{query}")
    assert response.status_code == 400, (query, response.content)
    error_of(response)


def test_rows_of_an_unknown_version_are_404(published, viewer, as_user):
    assert as_user(viewer).get(f"{ROWS}?version=7.0.0").status_code == 404


def test_the_columnar_copy_is_made_by_the_outbox_handler_with_types(dataset, publish):
    from catalog.models import DomainEvent

    publish(dataset, CSV)
    event = DomainEvent.objects.get(topic="version.published")
    columnar.on_version_published(event)
    columnar.on_version_published(event)  # a redelivery changes nothing
    version = DatasetVersion.objects.get(is_current=True)
    data = columnar.get_object_store().open(version.columnar_key).read()
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.field("revenue").type == pa.float64()
    assert table.schema.field("is_holiday").type == pa.bool_()
    assert table.num_rows == 3


def test_a_version_below_the_threshold_gets_no_copy_and_its_rows_are_ready_and_typed(
    dataset, publish, viewer, as_user, settings
):
    from catalog.models import DomainEvent

    body = big_csv(1000)
    settings.COLUMNAR_COPY_MIN_BYTES = len(body) + 1
    publish(dataset, body)
    columnar.on_version_published(DomainEvent.objects.get(topic="version.published"))
    version = DatasetVersion.objects.get(is_current=True)
    assert version.columnar_key == ""
    assert not columnar.get_object_store().exists(columnar.columnar_key(version))
    client = as_user(viewer)
    detail = client.get("/api/v1/datasets/gold/txn_daily/versions/1.0.0/").json()
    assert detail["rows_ready"] is True
    rows = client.get(f"{ROWS}?columns=n,flag,day&limit=2&offset=998").json()
    assert rows["results"] == [
        {"n": 998, "flag": False, "day": "2024-08-10"},
        {"n": 999, "flag": True, "day": "2024-08-10"},
    ]

    settings.COLUMNAR_COPY_MIN_BYTES = len(body)  # at the threshold: copied
    columnar.on_version_published(DomainEvent.objects.get(topic="version.published"))
    assert DatasetVersion.objects.get(is_current=True).columnar_key


def test_gzip_and_parquet_versions_have_rows_too(
    acme, system, publish, with_columnar, steward, as_user
):
    gz = dataset_create(organization=acme, layer="silver", name="gz", actor=system)
    publish(gz, gzip.compress(CSV), filename="d.csv.gz")
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]}), sink)
    pqd = dataset_create(organization=acme, layer="silver", name="pq", actor=system)
    publish(pqd, sink.getvalue(), filename="d.parquet")
    client = as_user(steward)
    assert client.get("/api/v1/datasets/silver/gz/rows/?columns=store_id&limit=1").json()[
        "results"
    ] == [{"store_id": "ST0001"}]
    assert client.get("/api/v1/datasets/silver/pq/rows/?offset=1").json()["results"] == [
        {"a": 2, "b": None},
        {"a": 3, "b": "z"},
    ]
    with_columnar(gz)
    with_columnar(pqd)
    assert client.get("/api/v1/datasets/silver/pq/rows/?offset=2&columns=b").json()["results"] == [
        {"b": "z"}
    ]


# --- The manifest ----------------------------------------------------------------------


def test_the_manifest_follows_the_contract_and_answers_304_to_its_etag(published, viewer, as_user):
    client = as_user(viewer)
    for url in ("/api/v1/manifest/", "/api/v1/manifests/latest.json"):
        response = client.get(url)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"generated_at", "version", "total_datasets", "datasets", "integrity"}
        assert body["integrity"]["manifest_sha256"] == manifest_checksum(body)
        etag = response["ETag"]
        assert etag == f'"{body["integrity"]["manifest_sha256"]}"'
        again = client.get(url, HTTP_IF_NONE_MATCH=etag)
        assert again.status_code == 304 and again.content == b""
        assert client.get(url, HTTP_IF_NONE_MATCH='"stale"').status_code == 200


def test_the_manifest_is_the_same_document_as_in_storage(published, viewer, as_user):
    from catalog.keys import manifest_latest_key
    from catalog.models import DomainEvent
    from versioning.handlers import write_manifest_to_storage

    write_manifest_to_storage(DomainEvent.objects.filter(topic="manifest.generated").latest("id"))
    stored = columnar.get_object_store().open(manifest_latest_key(org="acme")).read()
    assert as_user(viewer).get("/api/v1/manifest/").content == stored


def test_a_superseded_manifest_writes_its_history_copy_and_leaves_latest_to_the_newest(
    published, dataset, publish
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from catalog.keys import manifest_latest_key
    from catalog.models import DomainEvent
    from versioning.handlers import write_manifest_to_storage
    from versioning.manifest import canonical_json
    from versioning.models import Manifest

    publish(dataset, CSV + b"2024-08-12,ST0003,1.5,true\n")
    older, newer = DomainEvent.objects.filter(topic="manifest.generated").order_by("id")
    store = columnar.get_object_store()
    latest_key = manifest_latest_key(org="acme")
    if store.exists(latest_key):
        store.delete(latest_key)

    with CaptureQueriesContext(connection) as queries:
        write_manifest_to_storage(older)
    # Which manifest is newest is asked by id: the newer body is never read here.
    assert len(queries) == 3  # this manifest, the newest's id, written_at
    assert ['"body"' in q["sql"] for q in queries] == [True, False, False]
    first = Manifest.objects.get(pk=older.payload["manifest_id"])
    assert store.open(first.key).read() == canonical_json(first.body)
    assert first.written_at is not None
    assert not store.exists(latest_key)  # the newest manifest's own event writes it

    write_manifest_to_storage(newer)
    write_manifest_to_storage(newer)  # a redelivery: its history copy is kept as it is
    second = Manifest.objects.get(pk=newer.payload["manifest_id"])
    assert store.open(latest_key).read() == canonical_json(second.body)
    assert store.open(second.key).read() == canonical_json(second.body)


def test_a_member_of_several_organisations_gets_one_merged_manifest(
    published, globex, system, publish, django_user_model, as_user
):
    from catalog.models import Role
    from catalog.services import membership_set

    other = dataset_create(organization=globex, layer="gold", name="txn_daily", actor=system)
    publish(other, CSV + b"2024-08-12,ST9,1,true\n")
    both = django_user_model.objects.create_user(username="bea", password="pw-bea")
    for org in (published.organization, globex):
        membership_set(organization=org, user=both, role=Role.VIEWER, actor=system)
    client = as_user(both)
    body = client.get("/api/v1/manifest/").json()
    assert sorted(body["datasets"]) == ["acme/gold/txn_daily", "globex/gold/txn_daily"]
    assert body["integrity"]["manifest_sha256"] == manifest_checksum(body)
    only = client.get("/api/v1/manifest/?org=globex").json()
    assert list(only["datasets"]) == ["gold/txn_daily"]
    assert client.get("/api/v1/manifest/?org=initech").status_code == 404


def test_an_outsiders_manifest_lists_none_of_another_orgs_datasets(published, outsider, as_user):
    body = as_user(outsider).get("/api/v1/manifest/").json()
    assert body["total_datasets"] == 0
    assert as_user(outsider).get("/api/v1/manifest/?org=acme").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "",
        "limit=5&offset=10",
        "limit=0010&offset=0",
        "columns=%20a,b%20&format=csv",
        "columns=&format=ndjson",
        "version=%201.2.0%20",
        "columns=pr%C3%A9nom",
        "limit=1&limit=7",
        "page=2&limit=3",
        "offset=999999999999999999",
        "offset=4611686018427387904",
        "limit=10000",
        "limit=10001",
        "limit=0",
        "limit=-1",
        "limit=1.0",
        "offset=%205",
        "format=xml",
        "format=CSV",
        "version=",
        "version=%20",
        "version=" + "1" * 65,
        "columns=" + "a" * 20001,
        "columns=a%00b",
    ],
)
def test_the_rows_parameters_read_directly_are_what_the_serializer_gives(query):
    from django.http import QueryDict

    from versioning.api.views import RowsQuery, rows_params

    assert_reads_as_serializer(rows_params, RowsQuery, QueryDict(query))
