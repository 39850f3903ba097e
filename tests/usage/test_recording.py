"""The recording path: requests leave events in the buffer, the ingest copies them into
the partitioned log once each, and no fault loses or doubles one."""

from __future__ import annotations

import re
import socket
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from tests.conftest import in_forked_child, wait_for
from tests.usage.conftest import BROWSER, ROBOT, SCRIPT
from usage import capture, partitions
from usage.models import AccessMethod, Kind, RollupDue, UsageEvent
from usage.services import buffer, lines
from usage.services.ingest import events_ingest, events_write, lines_write

pytestmark = pytest.mark.django_db

DOWNLOAD = "/api/v1/datasets/gold/txn_daily/download/"
DETAIL = "/api/v1/datasets/gold/txn_daily/"
ROWS = "/api/v1/datasets/gold/txn_daily/rows/"


def record(**fields) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "t": time.time(),
        "kind": "detail",
        "status": 200,
        "ms": 5,
        "bytes": 10,
        "ua": BROWSER,
        "client": "c1",
        **fields,
    }


def test_a_download_is_recorded_with_its_dataset_version_user_token_and_bytes(
    published, viewer, as_user
):
    client = as_user(viewer)
    response = client.get(DOWNLOAD, HTTP_USER_AGENT=SCRIPT, HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 200

    assert events_ingest().written == 1
    [event] = UsageEvent.objects.all()
    version = published.versions.get()
    assert (event.dataset_id, event.version_id, event.organization_id) == (
        published.pk,
        version.pk,
        published.organization_id,
    )
    assert event.user_id == viewer.pk and event.token_id is not None
    assert event.kind == Kind.DOWNLOAD and event.status == 200
    assert event.bytes == len(response.content) and event.response_ms >= 0
    assert event.access_method == AccessMethod.MACHINE
    assert event.agent_family == "Python Requests"
    assert event.request_id == "req-42" and response["X-Request-ID"] == "req-42"
    assert event.country == ""
    assert RollupDue.objects.filter(day=event.occurred_at.date()).exists()


def test_each_endpoint_is_recorded_as_its_kind(published, viewer, as_user, with_columnar):
    with_columnar(published)
    client = as_user(viewer)
    client.get(DETAIL, HTTP_USER_AGENT=BROWSER)
    client.get(f"{DETAIL}versions/", HTTP_USER_AGENT=BROWSER)
    client.get(f"{ROWS}?format=csv", HTTP_USER_AGENT=BROWSER)
    client.get(f"{ROWS}?limit=1", HTTP_USER_AGENT=BROWSER)
    client.get("/api/v1/manifest/", HTTP_USER_AGENT=BROWSER)
    client.get("/api/v1/datasets/gold/nothing_here/", HTTP_USER_AGENT=BROWSER)
    client.get("/api/v1/dataset-proxy?dataset=gold/txn_daily", HTTP_USER_AGENT=BROWSER)

    events_ingest()

    kinds = list(UsageEvent.objects.order_by("occurred_at").values_list("kind", "status"))
    assert kinds == [
        ("detail", 200),
        ("versions", 200),
        ("export", 200),
        ("rows", 200),
        ("manifest", 200),
        ("detail", 404),
        ("download", 200),
    ]
    assert UsageEvent.objects.filter(kind="export").get().version_id is not None


def test_pages_outside_the_api_are_not_recorded(client):
    client.get("/healthz")
    assert events_ingest().read == 0


def test_the_same_batch_written_twice_is_stored_once():
    batch = [record(), record(kind="download"), record(status=404)]

    assert events_write(records=batch) == 3
    assert events_write(records=batch) == 0
    assert UsageEvent.objects.count() == 3


def test_a_malformed_event_is_left_out_and_the_rest_of_its_batch_is_written():
    batch = [record(), {"id": "not-a-uuid", "t": "soon"}, record()]

    assert events_write(records=batch) == 2


def test_an_event_id_is_taken_in_any_uuid_form_and_refused_otherwise():
    event_id = uuid.uuid4()
    for given in (event_id.hex, str(event_id), event_id.hex.upper(), f"{{{event_id}}}"):
        assert lines.decode(lines.encode(record(id=given)))["event_id"] == event_id
    for bad in ("not-a-uuid", event_id.hex[:31], event_id.hex + "0", "g" * 32, None):
        with pytest.raises(ValueError):
            lines.encode(record(id=bad))


@pytest.mark.parametrize(
    "agent",
    ["curl/8.5", "tab\there", "two\nlines\r", "back\\slash \\N", "ünïcode \u2028 sep", ""],
)
def test_texts_come_back_from_a_line_as_they_were_given(agent):
    line = lines.encode(record(ua=agent, client=agent[:32]))
    assert len(line.split("\t")) == len(lines.FIELDS) and "\n" not in line
    decoded = lines.decode(line)
    assert (decoded["user_agent"], decoded["client"]) == (agent, agent[:32])


def test_a_forked_process_draws_ids_of_its_own():
    childs = in_forked_child(capture.random_id)
    ours = capture.random_id()
    assert re.fullmatch("[0-9a-f]{32}", childs) and re.fullmatch("[0-9a-f]{32}", ours)
    assert childs != ours


def test_a_malformed_line_in_the_buffer_is_set_aside_and_its_batch_still_written():
    good = [lines.encode(record()) for _ in range(3)]
    bad = good[1].replace("\t200\t", "\tOK\t")  # a status that is not a number

    assert lines_write(lines=[good[0], bad, good[2], "half a line"]) == 2
    assert UsageEvent.objects.count() == 2


def test_robots_and_scripts_are_told_apart_from_people():
    events_write(records=[record(ua=BROWSER), record(ua=SCRIPT), record(ua=ROBOT)])

    methods = sorted(UsageEvent.objects.values_list("access_method", flat=True))
    assert methods == ["machine", "regular", "robot"]


def test_a_missing_partition_for_the_current_month_is_made_on_the_spot():
    now = datetime.now(UTC)
    month = partitions.month_start(now.date())
    partitions.partition_drop(month=month)
    assert partitions.partition_name(month) not in partitions.partitions_existing()

    assert events_write(records=[record(t=now.timestamp())]) == 1

    assert partitions.partition_name(month) in partitions.partitions_existing()
    assert UsageEvent.objects.count() == 1


def test_the_log_is_partitioned_by_month_with_brin_and_dataset_time_indexes():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = 'usage_event'"
        )
        assert cursor.fetchone() == ("r",)
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'usage_event' ORDER BY indexname"
        )
        definitions = " ".join(row[0] for row in cursor.fetchall())
    assert "USING brin (occurred_at)" in definitions
    assert "(dataset_id, occurred_at)" in definitions
    assert len(partitions.partitions_existing()) >= 4  # this month and three ahead


# --- Country ---------------------------------------------------------------------------


def test_a_country_header_is_believed_only_from_a_trusted_proxy(
    published, viewer, as_user, settings
):
    settings.USAGE_COUNTRY_HEADER = "CF-IPCountry"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = as_user(viewer)
    client.get(DETAIL, HTTP_CF_IPCOUNTRY="NZ", REMOTE_ADDR="10.1.2.3")
    client.get(DETAIL, HTTP_CF_IPCOUNTRY="KP", REMOTE_ADDR="203.0.113.9")  # spoofed
    client.get(DETAIL, HTTP_CF_IPCOUNTRY="<script>", REMOTE_ADDR="10.1.2.3")

    events_ingest()

    countries = list(UsageEvent.objects.order_by("occurred_at").values_list("country", flat=True))
    assert countries == ["NZ", "", ""]


# --- Redis down ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_with_redis_down_requests_answer_promptly_spool_their_events_and_none_is_lost(
    published, viewer, as_user, settings
):
    client = as_user(viewer)
    live = settings.USAGE_REDIS_URL
    settings.USAGE_REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    buffer.redis_reset()
    started = time.monotonic()
    for _ in range(12):
        assert client.get(DETAIL, HTTP_USER_AGENT=BROWSER).status_code == 200
    assert time.monotonic() - started < 10
    wait_for(buffer.spool_files, timeout=5, interval=0.05, message="the events in the spool")

    # Redis is back: the next request's event goes to Redis, and the web process
    # moves its spool there too.
    settings.USAGE_REDIS_URL = live
    buffer.redis_reset()
    client.get(DETAIL, HTTP_USER_AGENT=BROWSER)
    wait_for(lambda: not buffer.spool_files(), timeout=5, interval=0.05, message="the replay")

    assert events_ingest().written == 13
    assert events_ingest().written == 0
    assert UsageEvent.objects.filter(kind="detail", status=200).count() == 13


def test_without_redis_the_ingest_reads_the_spool_directly(published, viewer, as_user, settings):
    settings.USAGE_REDIS_URL = ""
    buffer.redis_reset()
    client = as_user(viewer)
    for _ in range(5):
        client.get(DETAIL, HTTP_USER_AGENT=BROWSER)

    assert events_ingest().written == 5
    assert not buffer.spool_files()
    assert UsageEvent.objects.count() == 5
