"""The management commands, as a pipeline or a steward runs them."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from catalog.models import AuditEntry, Dataset, Membership
from tests.conftest import wait_for
from versioning.models import DatasetVersion, JobStatus, PublishJob

CSV = b"day,store,revenue\n2024-08-10,ST1,10.5\n2024-08-10,ST2,7\n"


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), verbosity=0)
    return out.getvalue()


@pytest.mark.django_db
def test_publish_in_process_prints_the_version_key_and_sha256(dataset, tmp_path):
    path = tmp_path / "day.csv"
    path.write_bytes(CSV)
    out = run("publish", "gold/txn_daily", str(path), "--version", "2.1.0", "--in-process")
    version = DatasetVersion.objects.get(dataset=dataset)
    assert "version: 2.1.0" in out
    assert f"key:     {version.key}" in out
    assert f"sha256:  {hashlib.sha256(CSV).hexdigest()}" in out


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_publish_wait_follows_the_worker_to_the_end(dataset, tmp_path, start_worker):
    start_worker()
    path = tmp_path / "day.csv"
    path.write_bytes(CSV)
    out = run("publish", "gold/txn_daily", str(path), "--wait", "--timeout", "60")
    assert "version: 1.0.0" in out
    assert PublishJob.objects.get().status == JobStatus.SUCCEEDED


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["gold/nothing_here"], "No dataset 'gold/nothing_here'"),
        (["gold/txn_daily", "--org", "nobody"], "No organisation 'nobody'"),
        (["gold/txn_daily", "--version", "banana"], "not a semantic version"),
    ],
)
def test_publish_refuses_bad_arguments_clearly(dataset, tmp_path, args, message):
    path = tmp_path / "day.csv"
    path.write_bytes(CSV)
    with pytest.raises(CommandError, match=message):
        run("publish", args[0], str(path), *args[1:], "--in-process")
    assert not DatasetVersion.objects.exists()


@pytest.mark.django_db
def test_publish_reports_a_failed_publish_with_its_reason(dataset, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"a,b\n1,2\n3\n")
    with pytest.raises(CommandError, match="Publish failed"):
        run("publish", "gold/txn_daily", str(path), "--in-process")


@pytest.mark.django_db
def test_manifest_and_fetch_agree_with_what_was_published(dataset, publish, tmp_path):
    publish(dataset, CSV)
    manifest = json.loads(run("manifest", "--org", "acme"))
    entry = manifest["datasets"]["gold/txn_daily"]

    out_path = tmp_path / "fetched.csv"
    run("fetch", "gold/txn_daily", "-o", str(out_path))
    data = out_path.read_bytes()
    assert data == CSV
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["size_bytes"] == len(data)


@pytest.mark.django_db
def test_fetch_refuses_an_unknown_version(dataset, publish, tmp_path):
    publish(dataset, CSV)
    with pytest.raises(CommandError, match="has no version 9.9.9"):
        run("fetch", "gold/txn_daily", "--version", "9.9.9", "-o", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.django_db
def test_manifest_of_an_organisation_that_published_nothing_says_so(acme):
    with pytest.raises(CommandError, match="published nothing yet"):
        run("manifest", "--org", "acme")


@pytest.mark.django_db
def test_demo_publishes_the_nine_scout_datasets_once(monkeypatch, tmp_path):
    monkeypatch.setenv("DEMO_PASSWORD", "correct horse battery staple")
    run("demo")

    datasets = Dataset.objects.filter(organization__slug="scout")
    assert sorted(d.path for d in datasets) == sorted(
        [
            "gold/txn_daily",
            "gold/product_mix",
            "gold/basket_patterns",
            "gold/substitution_flows",
            "gold/request_behavior",
            "gold/demographics",
            "platinum/features_sales_7d",
            "platinum/store_perf",
            "platinum/customer_segments",
        ]
    )
    rows = {v.dataset.name: v.row_count for v in DatasetVersion.objects.filter(is_current=True)}
    assert rows["product_mix"] == 50_000 and rows["store_perf"] == 200
    assert DatasetVersion.objects.filter(dataset__name="txn_daily").count() == 2
    steward = get_user_model().objects.get(username="steward")
    assert steward.check_password("correct horse battery staple") and steward.is_staff
    assert Membership.objects.get(user=steward).role == "steward"

    manifest = json.loads(run("manifest", "--org", "scout"))
    assert manifest["total_datasets"] == 9
    entry = manifest["datasets"]["gold/demographics"]
    path = tmp_path / "demographics.csv"
    run("fetch", "gold/demographics", "--org", "scout", "-o", str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert path.stat().st_size == entry["size_bytes"]
    assert path.read_bytes().count(b"\n") - 1 == entry["row_count"]

    counts = (
        DatasetVersion.objects.count(),
        PublishJob.objects.count(),
        AuditEntry.objects.count(),
        steward.password,
    )
    out = run("demo")
    steward.refresh_from_db()
    assert "up to date" in out
    assert (
        DatasetVersion.objects.count(),
        PublishJob.objects.count(),
        AuditEntry.objects.count(),
        steward.password,
    ) == counts


def test_wait_for_fails_loudly_on_timeout():
    with pytest.raises(AssertionError, match="Timed out"):
        wait_for(lambda: False, timeout=0.2, message="nothing")
