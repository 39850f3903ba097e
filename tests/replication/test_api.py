"""The replication API: regions, rules (stewards), replicas, runs, costs, lag, on-demand
replication, and downloads by region, with the API's access rules and error shape."""

from __future__ import annotations

import hashlib
from urllib.request import urlopen

import pytest
from django.core.cache import cache

from catalog.models import Visibility
from replication.models import Region, Replica, ReplicationRule
from tests.api.conftest import error_of
from tests.replication.conftest import CSV

RULES = "/api/v1/replication/rules/"
DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()


@pytest.fixture
def replicated(dataset, publish, gold_rule, deliver, copy_due):
    version = publish(dataset, CSV).version
    deliver()
    assert set(copy_due().values()) == {"verified"}
    return version


def test_anyone_signed_in_lists_the_regions(regions, viewer, as_user):
    body = as_user(viewer, scopes=["read"]).get("/api/v1/replication/regions/").json()
    assert [r["code"] for r in body["results"]] == ["us-east-1", "ap-southeast-1", "eu-west-1"]
    assert body["results"][0]["storage"] == "primary"
    assert "access_key_env" not in body["results"][1]


def test_a_steward_creates_changes_and_deletes_a_rule(regions, steward, as_user, dataset):
    client = as_user(steward)
    created = client.post(
        RULES,
        {"pattern": "acme/gold/*", "regions": ["eu-west-1"], "bandwidth_mbps": 400},
        format="json",
    )
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert rule["organization"] == "acme" and rule["regions"] == ["eu-west-1"]
    assert rule["matched_datasets"] == 1 and rule["retention_days"] == 90

    changed = client.patch(
        f"{RULES}{rule['id']}/",
        {"policy": "scheduled", "cron": "*/30 * * * *", "regions": ["ap-southeast-1"]},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["next_run_at"] and changed.json()["regions"] == ["ap-southeast-1"]

    assert client.delete(f"{RULES}{rule['id']}/").status_code == 204
    assert not ReplicationRule.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"pattern": "acme/gold"}, "pattern", "three parts"),
        ({"pattern": "acme/gold/[abc"}, "pattern", "never closed"),
        ({"policy": "scheduled", "cron": "every day"}, "cron", "not a cron expression"),
        ({"policy": "scheduled"}, "cron", "needs a cron"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
        ({"bandwidth_mbps": 0}, "bandwidth_mbps", "1 to 100,000"),
        ({"bandwidth_mbps": -5}, "bandwidth_mbps", "1 to 100,000"),
        ({"bandwidth_mbps": 10**9}, "bandwidth_mbps", "1 to 100,000"),
        ({"retention_days": 0}, "retention_days", "at least one day"),
        ({"regions": ["us-east-1"]}, "regions", "primary"),
        ({"regions": ["mars-1"]}, "regions", "Unknown region"),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_naming_the_problem(
    regions, steward, as_user, change, field, words
):
    body = {"pattern": "acme/gold/*", "regions": ["eu-west-1"], **change}
    response = as_user(steward).post(RULES, body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert words in error["message"]
    assert field in error["details"] or field == "regions"
    assert not ReplicationRule.objects.exists()


def test_a_rule_to_an_inactive_region_or_one_without_its_credentials_is_refused(
    regions, steward, as_user, monkeypatch
):
    client = as_user(steward)
    regions["ap-southeast-1"].is_active = False
    regions["ap-southeast-1"].save()
    inactive = client.post(
        RULES, {"pattern": "acme/*/*", "regions": ["ap-southeast-1"]}, format="json"
    )
    assert "inactive" in error_of(inactive)["message"]

    monkeypatch.delenv("REGION_SECRET")
    unset = client.post(RULES, {"pattern": "acme/*/*", "regions": ["eu-west-1"]}, format="json")
    assert unset.status_code == 400
    assert "REGION_SECRET" in error_of(unset)["message"]


def test_a_rule_that_matches_nothing_is_allowed_and_says_so(regions, steward, as_user):
    response = as_user(steward).post(
        RULES, {"pattern": "acme/platinum/*", "regions": ["eu-west-1"]}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["matched_datasets"] == 0


def test_viewers_read_rules_but_only_stewards_write_and_outsiders_see_nothing(
    regions, gold_rule, viewer, outsider, as_user
):
    reader = as_user(viewer)
    assert reader.get(RULES).json()["count"] == 1
    refused = reader.patch(f"{RULES}{gold_rule.pk}/", {"enabled": False}, format="json")
    assert refused.status_code == 403

    stranger = as_user(outsider)
    assert stranger.get(RULES).json()["count"] == 0
    assert stranger.get(f"{RULES}{gold_rule.pk}/").status_code == 404
    assert stranger.delete(f"{RULES}{gold_rule.pk}/").status_code == 404


def test_replicas_and_runs_filter_by_dataset_region_and_status_and_hide_other_orgs(
    replicated, viewer, outsider, as_user
):
    client = as_user(viewer)
    body = client.get(
        "/api/v1/replication/replicas/?dataset=gold/txn_daily&region=eu-west-1&status=verified"
    ).json()
    assert body["count"] == 1
    assert body["results"][0]["sha256_measured"] == replicated.sha256
    assert client.get("/api/v1/replication/replicas/?status=failed").json()["count"] == 0
    runs = client.get("/api/v1/replication/runs/?region=ap-southeast-1").json()
    assert runs["count"] == 1 and runs["results"][0]["bytes_transferred"] == len(CSV)

    stranger = as_user(outsider)
    assert stranger.get("/api/v1/replication/replicas/").json()["count"] == 0
    replica = Replica.objects.first()
    assert stranger.get(f"/api/v1/replication/replicas/{replica.pk}/").status_code == 404


def test_the_cost_report_prices_transfer_and_storage_per_dataset_and_region(
    replicated, viewer, as_user
):
    from django.utils import timezone

    month = timezone.now().strftime("%Y-%m")
    body = as_user(viewer).get(f"/api/v1/replication/costs/?month={month}").json()
    rows = {r["region"]: r for r in body["rows"]}
    assert set(rows) == {"ap-southeast-1", "eu-west-1"}
    eu = rows["eu-west-1"]
    assert eu["dataset"] == "gold/txn_daily" and eu["transfer_bytes"] == len(CSV)
    assert float(eu["transfer_cost_usd"]) == pytest.approx(len(CSV) / 1024**3 * 0.09, abs=1e-6)
    assert float(body["total_cost_usd"]) > 0

    for month in ("2024-13", "0000-01", "9999-12", "May"):
        bad = as_user(viewer).get(f"/api/v1/replication/costs/?month={month}")
        assert bad.status_code == 400 and "month" in error_of(bad)["details"]


def test_lag_shows_what_waits_per_region(dataset, publish, gold_rule, deliver, viewer, as_user):
    publish(dataset, CSV)
    deliver()
    lags = {r["region"]: r for r in as_user(viewer).get("/api/v1/replication/lag/").json()}
    assert lags["eu-west-1"]["pending_copies"] == 1
    assert lags["eu-west-1"]["pending_bytes"] == len(CSV)
    assert lags["eu-west-1"]["oldest_pending_seconds"] >= 0


def test_a_steward_asks_for_a_copy_now_and_bad_regions_are_named(
    dataset, publish, regions, steward, viewer, outsider, as_user
):
    publish(dataset, CSV)
    url = "/api/v1/datasets/gold/txn_daily/replicate/"
    accepted = as_user(steward).post(url, {"regions": ["eu-west-1"]}, format="json")
    assert accepted.status_code == 202, accepted.json()
    assert [r["region"] for r in accepted.json()["queued"]] == ["eu-west-1"]

    bad = as_user(steward).post(url, {"regions": ["us-east-1", "nowhere"]}, format="json")
    assert bad.status_code == 400
    assert set(error_of(bad)["details"]["regions"]) == {"us-east-1", "nowhere"}
    assert as_user(viewer).post(url, {}, format="json").status_code == 403
    assert as_user(outsider).post(url, {}, format="json").status_code == 404


def test_a_region_download_signs_that_regions_verified_copy_whose_bytes_match(
    replicated, viewer, as_user
):
    client = as_user(viewer)
    body = client.get(f"{DOWNLOAD}?region=eu-west-1").json()
    assert body["dataset_info"]["region"] == "eu-west-1"
    eu_port = Replica.objects.get(region__code="eu-west-1").region.endpoint_url.rsplit(":", 1)[1]
    assert f":{eu_port}/" in body["signed_url"]
    data = urlopen(body["signed_url"]).read()
    assert hashlib.sha256(data).hexdigest() == body["dataset_info"]["sha256"] == replicated.sha256
    assert "cdn_url" not in body  # a private dataset has no CDN address

    primary = client.get(f"{DOWNLOAD}?region=us-east-1").json()
    assert primary["dataset_info"]["region"] == "us-east-1"
    assert "region" not in client.get(DOWNLOAD).json()["dataset_info"]  # as before regions
    proxied = client.get("/api/v1/dataset-proxy?dataset=gold/txn_daily&region=ap-southeast-1")
    assert proxied.json()["dataset_info"]["region"] == "ap-southeast-1"
    raw = client.get("/api/v1/datasets/gold/txn_daily/raw/?region=ap-southeast-1")
    assert raw.status_code == 302 and f":{eu_port}/" not in raw["Location"]


def test_a_region_without_a_verified_copy_falls_back_to_the_primary_and_unknown_is_400(
    dataset, publish, regions, viewer, as_user
):
    publish(dataset, CSV)
    client = as_user(viewer)
    body = client.get(f"{DOWNLOAD}?region=eu-west-1").json()
    assert body["dataset_info"]["region"] == "us-east-1"
    unknown = client.get(f"{DOWNLOAD}?region=mars-1")
    assert unknown.status_code == 400
    assert "eu-west-1" in error_of(unknown)["details"]["valid"]


def test_a_public_datasets_download_carries_the_regions_cdn_url(replicated, dataset, api):
    dataset.visibility = Visibility.PUBLIC
    dataset.save()
    body = api.get(f"{DOWNLOAD}?region=eu-west-1").json()
    assert body["cdn_url"] == f"https://cdn-eu.scout.io/{replicated.key}"


def test_a_local_folder_region_is_copied_verified_and_served_by_the_apps_signed_urls(
    dataset, publish, regions, steward, viewer, as_user, copy_due, system, tmp_path, client
):
    from urllib.parse import urlparse

    from replication.services import region_save

    folder = region_save(
        region=Region(code="edge-1", name="Edge folder", local_path=str(tmp_path / "edge")),
        actor=system,
    )
    version = publish(dataset, CSV).version
    as_user(steward).post(
        "/api/v1/datasets/gold/txn_daily/replicate/", {"regions": ["edge-1"]}, format="json"
    )
    assert set(copy_due().values()) == {"verified"}
    replica = Replica.objects.get(region=folder)
    assert replica.runs.get().bytes_transferred == len(CSV)
    assert (tmp_path / "edge" / version.key).read_bytes() == CSV
    assert not (tmp_path / "edge" / "acme" / "replication-staging").exists() or not any(
        (tmp_path / "edge" / "acme" / "replication-staging").rglob("*")
    )

    body = as_user(viewer).get(f"{DOWNLOAD}?region=edge-1").json()
    assert body["dataset_info"]["region"] == "edge-1"
    url = urlparse(body["signed_url"])
    assert "store=edge-1" in url.query
    fetched = client.get(f"{url.path}?{url.query}")
    assert fetched.status_code == 200
    assert b"".join(fetched.streaming_content) == CSV
    tampered = client.get(f"{url.path}?{url.query.replace('store=edge-1', 'store=eu-west-1')}")
    assert tampered.status_code == 403
