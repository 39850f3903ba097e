"""On the demo data: a dropped column is refused as a minor and accepted as a major, a
rollback brings the previous SHA-256 back into the manifest, and lineage shows a platinum
dataset's gold inputs."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command

from catalog.audit import Actor
from catalog.models import Dataset
from catalog.storage import get_object_store
from versioning.manifest import manifest_latest
from versioning.models import ChangeKind, DatasetVersion
from versioning.services import dataset_rollback, lineage_graph

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), verbosity=0)
    return out.getvalue()


def without_column(data: bytes, column: str) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    drop = rows[0].index(column)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(row[:drop] + row[drop + 1 :])
    return out.getvalue().encode()


def test_the_demo_data_versions_roll_back_and_show_lineage(tmp_path):
    run("demo")
    txn = Dataset.objects.get(layer="gold", name="txn_daily")
    previous = DatasetVersion.objects.get(dataset=txn, is_current=True)
    assert previous.version == "1.1.0"
    with get_object_store().open(previous.key) as stream:
        dropped = without_column(stream.read(), "region")
    path = tmp_path / "txn_daily.csv"
    path.write_bytes(dropped)

    with pytest.raises(CommandError) as refused:
        run("publish", "gold/txn_daily", str(path), "--version", "1.2.0", "--in-process")
    assert "claims a minor change" in str(refused.value)
    assert "region" in str(refused.value)

    out = run("publish", "gold/txn_daily", str(path), "--version", "2.0.0", "--in-process")
    assert "version: 2.0.0" in out and "breaking: region" in out
    major = DatasetVersion.objects.get(dataset=txn, is_current=True)
    assert (major.version, major.breaking, major.change_type) == ("2.0.0", True, "major")
    removed = major.changes.get(kind=ChangeKind.COLUMN_REMOVED)
    assert "`region`" in removed.text

    dataset_rollback(
        dataset=txn, to="1.1.0", reason="region is needed", actor=Actor.system(via="command")
    )
    listed = manifest_latest(organization=txn.organization).body["datasets"]["gold/txn_daily"]
    assert (listed["schema_version"], listed["sha256"]) == ("1.1.0", previous.sha256)

    features = DatasetVersion.objects.get(dataset__name="features_sales_7d", is_current=True)
    upstream = lineage_graph(version=features, direction="upstream", depth=3)
    assert {n["id"] for n in upstream["nodes"] if n["distance"] == 1} == {
        "gold/txn_daily@1.1.0",
        "gold/product_mix@1.0.0",
    }
    segments = DatasetVersion.objects.get(dataset__name="customer_segments", is_current=True)
    assert {e["from"] for e in lineage_graph(version=segments)["edges"]} == {
        "gold/demographics@1.0.0",
        "gold/basket_patterns@1.0.0",
        "gold/request_behavior@1.0.0",
    }

    before = DatasetVersion.objects.count()
    assert "is up to date" in run("demo")
    assert DatasetVersion.objects.count() == before
