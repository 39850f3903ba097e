"""COUNTER counts from a fixed log with known answers, through the pure counting code
and through the whole path (ingest, rollup), checked figure by figure."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from tests.usage.conftest import BROWSER, ROBOT, SCRIPT
from usage.models import (
    CounterDay,
    CountryDay,
    DatasetDay,
    RollupDue,
    SiteDay,
    UsageSession,
    UserDay,
    VersionDay,
)
from usage.services.counting import Hit, counter_count
from usage.services.ingest import events_write
from usage.services.rollups import rollup_day, rollups_run_due

DAY = date(2026, 11, 10)

# (time, who, kind, status). "alice" and "bob" are signed-in people in a browser; "script"
# an anonymous python-requests client; "robot" Googlebot.
LOG = [
    ("10:00:00", "alice", "detail", 200),
    ("10:00:29", "alice", "detail", 200),  # 29 s later: a double click, counted once
    ("10:01:00", "alice", "detail", 200),  # 31 s after the last: counted again
    ("10:05:00", "alice", "download", 200),
    ("10:10:00", "alice", "detail", 404),  # not found: never counted
    ("10:59:50", "alice", "download", 200),
    ("11:00:10", "alice", "download", 200),  # 20 s later, across the hour: counted once
    ("10:00:00", "robot", "download", 200),  # robots: never counted
    ("10:00:00", "script", "download", 200),
    ("10:00:40", "script", "download", 200),  # 40 s later: counted again
    ("10:30:00", "script", "export", 200),
    ("12:00:00", "bob", "rows", 200),
    ("12:00:10", "bob", "detail", 500),  # a server error: never counted
    ("12:01:00", "bob", "export", 200),
]
AGENTS = {"alice": BROWSER, "bob": BROWSER, "script": SCRIPT, "robot": ROBOT}
METHODS = {"alice": "regular", "bob": "regular", "script": "machine", "robot": "robot"}

EXPECTED = {
    "regular": {
        # alice: detail 2 + download 2; bob: rows 1 + export 1
        "total_investigations": 6,
        # alice|10, alice|11, bob|12
        "unique_investigations": 3,
        # alice: downloads 2; bob: export 1
        "total_requests": 3,
        "unique_requests": 3,
    },
    "machine": {
        "total_investigations": 3,
        "unique_investigations": 1,
        "total_requests": 3,
        "unique_requests": 1,
    },
}


def at(clock: str) -> datetime:
    hours, minutes, seconds = map(int, clock.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, hours, minutes, seconds, tzinfo=UTC)


def test_the_fixed_log_gives_counters_known_answers():
    hits = [Hit(at(clock), who, 7, kind, status, METHODS[who]) for clock, who, kind, status in LOG]

    figures = {method: f.as_dict() for (dataset_id, method), f in counter_count(hits).items()}

    assert figures == EXPECTED


def test_a_repeat_exactly_30_seconds_later_is_still_a_double_click_and_31_is_not():
    def total(seconds: int) -> int:
        hits = [
            Hit(at("09:00:00"), "u1", 1, "download", 200, "regular"),
            Hit(at(f"09:00:{seconds}"), "u1", 1, "download", 200, "regular"),
        ]
        return counter_count(hits)[(1, "regular")].total_requests

    assert (total(29), total(30), total(31)) == (1, 1, 2)


def test_a_chain_of_clicks_each_within_30_seconds_counts_once():
    hits = [
        Hit(at(f"09:0{m}:{s:02d}"), "u1", 1, "detail", 200, "regular")
        for m, s in [(0, 0), (0, 25), (0, 50), (1, 15)]
    ]

    assert counter_count(hits)[(1, "regular")].total_investigations == 1


# --- Through the whole path ------------------------------------------------------------


@pytest.fixture
def replayed(published, django_user_model):
    """The fixed log, written as the ingest writes it, for acme's gold/txn_daily."""
    users = {
        name: django_user_model.objects.create_user(username=name) for name in ("alice", "bob")
    }
    version = published.versions.get()
    records = []
    for clock, who, kind, status in LOG:
        user = users.get(who)
        records.append(
            {
                "id": uuid.uuid4().hex,
                "t": at(clock).timestamp(),
                "organization": published.organization_id,
                "dataset": published.pk,
                "version": version.pk,
                "user": user.pk if user else None,
                "kind": kind,
                "status": status,
                "ms": 10 * (len(records) + 1),
                "bytes": 100,
                "ua": AGENTS[who],
                "client": who,
            }
        )
    assert events_write(records=records) == len(LOG)
    return published, users, version


@pytest.mark.django_db
def test_the_rollup_of_the_fixed_log_stores_the_known_answers(replayed):
    dataset, users, version = replayed

    assert rollups_run_due() == [DAY]

    counter = {
        row["access_method"]: {k: v for k, v in row.items() if k != "access_method"}
        for row in CounterDay.objects.filter(dataset=dataset, day=DAY).values(
            "access_method",
            "total_investigations",
            "unique_investigations",
            "total_requests",
            "unique_requests",
        )
    }
    assert counter == EXPECTED
    day = DatasetDay.objects.get(dataset=dataset, day=DAY)
    assert (day.downloads, day.unique_downloads) == (6, 4)
    assert (day.investigations, day.unique_investigations) == (9, 4)
    assert day.api_calls == 14  # every request, robots and errors included
    assert day.errors == 2 and day.exports == 2 and day.unique_users == 3
    assert day.bytes == 1400
    assert (day.p50_ms, day.p95_ms) == (70, 140)

    alice, bob = (UserDay.objects.get(user=users[n], day=DAY) for n in ("alice", "bob"))
    assert (alice.events, alice.downloads, alice.exports, alice.errors, alice.sessions) == (
        7,
        3,
        0,
        1,
        2,
    )
    assert (bob.events, bob.downloads, bob.exports, bob.errors, bob.sessions) == (3, 0, 1, 1, 1)
    # alice 10:00-10:10 and 10:59:50-11:00:10 (a 49-minute gap), bob, the script.
    assert UsageSession.objects.filter(day=DAY).count() == 4
    reads = VersionDay.objects.get(version=version, day=DAY)
    assert (reads.reads, reads.users) == (8, 3)  # downloads, exports and rows; no robot
    site = SiteDay.objects.get(day=DAY)
    assert (site.downloads, site.errors, site.active_users, site.sessions) == (6, 2, 3, 4)
    assert not RollupDue.objects.exists()


@pytest.mark.django_db
def test_running_a_days_rollup_twice_gives_the_same_rows(replayed):
    def snapshot():
        return (
            list(DatasetDay.objects.values_list("dataset_id", "downloads", "p95_ms")),
            list(CounterDay.objects.order_by("access_method").values_list("total_requests")),
            list(UserDay.objects.order_by("user_id").values_list("user_id", "events")),
            UsageSession.objects.count(),
            list(VersionDay.objects.values_list("reads")),
        )

    rollup_day(day=DAY)
    first = snapshot()
    rollup_day(day=DAY)

    assert snapshot() == first
    assert DatasetDay.objects.count() == 1


@pytest.mark.django_db
def test_late_events_mark_their_day_again_and_the_next_run_takes_them_in(replayed):
    dataset, users, version = replayed
    rollups_run_due()
    late = {
        "id": uuid.uuid4().hex,
        "t": at("23:00:00").timestamp(),
        "dataset": dataset.pk,
        "organization": dataset.organization_id,
        "kind": "download",
        "status": 200,
        "ua": BROWSER,
        "client": "late",
    }

    events_write(records=[late])
    assert rollups_run_due() == [DAY]

    assert DatasetDay.objects.get(dataset=dataset, day=DAY).downloads == 7


@pytest.mark.django_db
def test_the_sql_and_python_rollups_give_the_same_rows(replayed):
    dataset, users, version = replayed
    extra = []
    for i in range(300):  # more visitors, kinds, statuses and hours than the fixed log
        extra.append(
            {
                "id": uuid.uuid4().hex,
                "t": at("00:00:00").timestamp() + i * 97,
                "organization": dataset.organization_id,
                "dataset": dataset.pk if i % 7 else None,
                "version": version.pk if i % 3 else None,
                "user": users["alice"].pk if i % 4 == 0 else None,
                "kind": ["download", "detail", "export", "rows", "list", "object"][i % 6],
                "status": [200, 200, 304, 404, 500, 206][i % 6],
                "ms": (i * 37) % 500,
                "bytes": i,
                "country": ["NZ", "", "PH"][i % 3],
                "ua": [BROWSER, SCRIPT, ROBOT][i % 3],
                "client": f"c{i % 11}",
            }
        )
    events_write(records=extra)

    def snapshot():
        tables = (DatasetDay, CounterDay, UserDay, VersionDay, SiteDay, UsageSession, CountryDay)
        return {
            model.__name__: sorted(
                (tuple(v for k, v in row.items() if k != "id") for row in model.objects.values()),
                key=repr,
            )
            for model in tables
        }

    rollup_day(day=DAY, engine="python")
    python = snapshot()
    rollup_day(day=DAY, engine="sql")

    assert snapshot() == python
    assert python["UsageSession"] and python["CountryDay"] and python["CounterDay"]


@pytest.mark.django_db
@pytest.mark.parametrize("engine", ["sql", "python"])
def test_events_for_a_dataset_or_user_deleted_since_do_not_stop_the_rollup(replayed, engine):
    dataset, users, version = replayed
    gone = {
        "id": uuid.uuid4().hex,
        "t": at("09:00:00").timestamp(),
        "organization": dataset.organization_id,
        "dataset": 999_999,
        "version": 999_999,
        "user": 999_999,
        "kind": "download",
        "status": 200,
        "ua": BROWSER,
        "client": "gone",
    }
    events_write(records=[gone])

    rollup_day(day=DAY, engine=engine)

    assert list(DatasetDay.objects.values_list("dataset_id", flat=True)) == [dataset.pk]
    assert not UserDay.objects.filter(user_id=999_999).exists()
    assert SiteDay.objects.get(day=DAY).active_users == 4  # the visitor still counts
