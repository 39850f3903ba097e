"""Segments, thresholds, anomalies, breaking-change consumers, partitions and retention:
each computed from the rollups, each event recorded once however often it runs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.utils import timezone

from catalog.models import DomainEvent
from tests.api.conftest import CSV
from tests.usage.conftest import BROWSER
from usage import handlers, partitions
from usage.models import (
    BreakingChangeNotice,
    Metric,
    RollupDue,
    UsageAnomaly,
    UsageThreshold,
    UserSegment,
)
from usage.services.alerts import anomalies_detect, thresholds_check
from usage.services.ingest import events_write
from usage.services.maintenance import partitions_maintain, retention_apply
from usage.services.rollups import rollups_run_due
from usage.services.segments import segments_compute

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 30)


def downloads(dataset, day: date, count: int, *, user=None, version=None) -> None:
    at = datetime.combine(day, time(8), tzinfo=UTC)
    events_write(
        records=[
            {
                "id": uuid.uuid4().hex,
                "t": (at + timedelta(minutes=i)).timestamp(),
                "organization": dataset.organization_id,
                "dataset": dataset.pk,
                "version": version.pk if version else None,
                "user": user.pk if user else None,
                "kind": "download",
                "status": 200,
                "ua": BROWSER,
                "client": f"c{i}",
            }
            for i in range(count)
        ]
    )


def topics(topic: str) -> list[dict]:
    return [e.payload for e in DomainEvent.objects.filter(topic=topic).order_by("id")]


# --- Segments ---------------------------------------------------------------------------


def test_users_fall_into_power_regular_occasional_and_new_segments_kept_as_history(
    published, django_user_model
):
    people = {
        name: django_user_model.objects.create_user(username=name)
        for name in ("power", "regular", "occasional", "new", "gone")
    }
    activity = {
        "power": [40, *range(0, 24, 2)],  # 12 active days in the last 30
        "regular": [25, 20, 10, 5],
        "occasional": [60, 40],
        "new": [3, 1],
        "gone": [120],  # nothing in the last 90 days
    }
    for name, days_back in activity.items():
        for back in days_back:
            downloads(published, TODAY - timedelta(days=back), 1, user=people[name])
    rollups_run_due(limit=200)

    assert segments_compute(day=TODAY) == 4
    assert segments_compute(day=TODAY - timedelta(days=1)) == 4

    segments = dict(UserSegment.objects.filter(day=TODAY).values_list("user__username", "segment"))
    assert segments == {
        "power": "power",
        "regular": "regular",
        "occasional": "occasional",
        "new": "new",
    }
    assert UserSegment.objects.filter(user=people["power"]).count() == 2  # history
    power = UserSegment.objects.get(user=people["power"], day=TODAY)
    assert (power.active_days_30, power.active_days_90, power.events_30) == (12, 13, 12)


# --- Thresholds ---------------------------------------------------------------------------


def test_a_threshold_is_recorded_once_per_crossing(published):
    UsageThreshold.objects.create(dataset=published, metric=Metric.DOWNLOADS, value=2)
    counts = [3, 5, 0, 3]
    for offset, count in enumerate(counts):
        downloads(published, TODAY + timedelta(days=offset), count)
    rollups_run_due()

    crossed = []
    for offset in range(len(counts)):
        day = TODAY + timedelta(days=offset)
        crossed.append(thresholds_check(day=day))
        assert thresholds_check(day=day) == 0  # the same day again changes nothing

    assert crossed == [1, 0, 0, 1]
    payloads = topics("usage.threshold_crossed")
    assert [(p["day"], p["value"]) for p in payloads] == [("2026-11-30", 3), ("2026-12-03", 3)]
    assert payloads[0]["dataset"] == "gold/txn_daily" and payloads[0]["organization"] == "acme"


def test_a_below_threshold_fires_on_a_quiet_day(published):
    UsageThreshold.objects.create(
        dataset=published, metric=Metric.DOWNLOADS, direction="below", value=1
    )

    assert thresholds_check(day=TODAY) == 1
    assert topics("usage.threshold_crossed")[0]["direction"] == "below"


# --- Anomalies ---------------------------------------------------------------------------


def test_a_day_far_outside_its_trailing_28_days_is_an_anomaly_recorded_once(published):
    for back in range(1, 21):
        downloads(published, TODAY - timedelta(days=back), 9 + back % 3)
    downloads(published, TODAY, 40)
    downloads(published, TODAY - timedelta(days=21), 10)
    rollups_run_due(limit=100)

    assert anomalies_detect(day=TODAY) == 1
    assert anomalies_detect(day=TODAY) == 0
    assert anomalies_detect(day=TODAY - timedelta(days=1)) == 0  # an ordinary day

    [payload] = topics("usage.anomaly")
    assert payload["value"] == 40 and payload["direction"] == "above"
    assert UsageAnomaly.objects.get().mean == pytest.approx(payload["mean"], abs=0.001)


def test_a_dataset_with_too_little_history_has_no_anomalies(published):
    downloads(published, TODAY - timedelta(days=1), 1)
    downloads(published, TODAY, 50)
    rollups_run_due()

    assert anomalies_detect(day=TODAY) == 0


# --- Breaking changes ---------------------------------------------------------------------


def test_a_breaking_version_names_who_read_the_major_it_replaces_once(
    published, publish, django_user_model
):
    old = published.versions.get()
    alice, bob, carol = (
        django_user_model.objects.create_user(username=n) for n in ("alice", "bob", "carol")
    )
    now = timezone.now()
    downloads(published, now.date(), 1, user=alice, version=old)
    downloads(published, (now - timedelta(days=30)).date(), 2, user=bob, version=old)
    downloads(published, (now - timedelta(days=120)).date(), 1, user=carol, version=old)
    no_holiday = b"\n".join(line.rsplit(b",", 1)[0] for line in CSV.splitlines()) + b"\n"

    job = publish(published, no_holiday, version="2.0.0")
    assert job.status == "succeeded", job.message
    assert job.version.breaking
    event = DomainEvent.objects.filter(topic="version.published").latest("id")
    handlers.on_version_published(event)
    handlers.on_version_published(event)  # delivered twice: recorded once

    [payload] = topics("usage.breaking_change_consumers")
    assert payload["usernames"] == ["alice", "bob"]  # carol read it 120 days ago
    assert payload["user_ids"] == [alice.pk, bob.pk]
    assert (payload["version"], payload["previous_version"], payload["previous_major"]) == (
        "2.0.0",
        "1.0.0",
        1,
    )
    assert BreakingChangeNotice.objects.count() == 1


def test_a_non_breaking_version_records_no_consumers(published, publish):
    more = CSV + b"2024-08-12,ST0003,1.5,false\n"
    publish(published, more)
    event = DomainEvent.objects.filter(topic="version.published").latest("id")

    handlers.on_version_published(event)

    assert topics("usage.breaking_change_consumers") == []


# --- Partitions and retention -------------------------------------------------------------


def test_partitions_are_made_three_months_ahead(db):
    made = partitions_maintain(today=date(2031, 5, 17))

    assert made == [f"usage_event_y2031m{m:02d}" for m in (5, 6, 7, 8)]
    assert partitions_maintain(today=date(2031, 5, 17)) == []


def test_old_partitions_are_dropped_only_once_their_days_are_rolled_up(published, settings):
    settings.USAGE_RETENTION_MONTHS = 13
    old = date(2024, 3, 10)
    downloads(published, old, 2)  # makes the 2024-03 partition on the spot
    assert "usage_event_y2024m03" in partitions.partitions_existing()
    assert RollupDue.objects.filter(day=old).exists()

    assert retention_apply(today=TODAY) == []  # not rolled up yet: kept

    rollups_run_due()
    assert retention_apply(today=TODAY) == ["usage_event_y2024m03"]
    assert "usage_event_y2024m03" not in partitions.partitions_existing()
    this_month = partitions.month_start(timezone.now().date())
    assert partitions.partition_name(this_month) in partitions.partitions_existing()
