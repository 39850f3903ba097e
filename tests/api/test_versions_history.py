"""A dataset's history through the API: changes, diff, lineage, rollback, the lifecycle of
versions, the publish flags, deprecation headers and steward-only downloads."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.audit import Actor
from catalog.models import AuditEntry
from catalog.services import dataset_create
from tests.api.conftest import CSV, error_of
from tests.api.test_publish import multipart, post_multipart
from versioning.models import DatasetVersion, JobSource, PublishJob
from versioning.services import publish_job_create, publish_job_run

pytestmark = pytest.mark.django_db

BASE = "/api/v1/datasets/gold/txn_daily/"
CSV_2 = CSV + b"2024-08-12,ST0003,1.5,true\n"
CSV_WIDER = (
    b"date_key,store_id,revenue,is_holiday,units\n"
    b"2024-08-10,ST0001,10.5,false,3\n"
    b"2024-08-13,ST0009,2,true,1\n"
)


def without_column(data: bytes, column: str) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    drop = rows[0].index(column)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:drop] + r[drop + 1 :] for r in rows])
    return out.getvalue().encode()


def publish_as(dataset, data: bytes, *, version: str = "", draft=False, inputs=(), user=None):
    job = publish_job_create(
        dataset=dataset,
        stream=io.BytesIO(data),
        filename="data.csv",
        actor=Actor(user=user, via="api") if user else Actor.system(via="command"),
        source=JobSource.COMMAND,
        requested_version=version,
        draft=draft,
        inputs=list(inputs),
    )
    job = publish_job_run(job_id=job.pk)
    assert job.status == "succeeded", job.message
    return job.version


@pytest.fixture
def two_versions(published, publish):
    """gold/txn_daily with 1.0.0 and, current, 1.1.0."""
    job = publish(published, CSV_2, version="1.1.0")
    assert job.status == "succeeded", job.message
    return published


def sunset(days: int = 30) -> str:
    return (timezone.localdate() + timedelta(days=days)).isoformat()


# --- Changes, diff, lineage -------------------------------------------------------------


def test_changes_show_the_classification_and_the_changelog_of_a_version(
    two_versions, viewer, as_user
):
    body = as_user(viewer).get(f"{BASE}versions/1.1.0/changes/").json()
    assert body["parent"] == "1.0.0" and body["change_type"] == "patch"
    assert body["breaking"] is False
    assert [e["kind"] for e in body["entries"]] == ["data_changed"]
    assert body["diff"]["row_delta"] == 1


def test_the_diff_compares_any_two_versions_in_either_order(two_versions, viewer, as_user):
    client = as_user(viewer)
    body = client.get(f"{BASE}diff/?from=1.0.0&to=1.1.0").json()
    assert body["change_type"] == "patch" and body["row_delta"] == 1
    backwards = client.get(f"{BASE}diff/?from=v1.1.0&to=1.0.0").json()
    assert backwards["row_delta"] == -1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "from"),
        ("?from=1.0.0", "to"),
        ("?to=1.0.0", "from"),
        ("?from=1.0.0&to=9.9.9", "to"),
        ("?from=7.0.0&to=1.0.0", "from"),
        ("?from=1.0&to=1.1.0", "from"),
    ],
)
def test_a_diff_with_from_or_to_missing_unknown_or_malformed_is_a_400(
    two_versions, viewer, as_user, query, field
):
    response = as_user(viewer).get(f"{BASE}diff/{query}")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert field in error["message"]


def test_lineage_goes_up_to_the_inputs_and_down_to_what_was_built_from_them(
    published, acme, system, viewer, as_user
):
    platinum = dataset_create(organization=acme, layer="platinum", name="kpis", actor=system)
    publish_as(platinum, CSV, inputs=["gold/txn_daily@1.0.0"])
    client = as_user(viewer)
    up = client.get("/api/v1/datasets/platinum/kpis/versions/1.0.0/lineage/").json()
    assert [n["id"] for n in up["nodes"]] == ["platinum/kpis@1.0.0", "gold/txn_daily@1.0.0"]
    assert up["edges"] == [{"from": "gold/txn_daily@1.0.0", "to": "platinum/kpis@1.0.0"}]
    down = client.get(f"{BASE}versions/1.0.0/lineage/?direction=downstream&depth=1").json()
    assert [n["id"] for n in down["nodes"]] == ["gold/txn_daily@1.0.0", "platinum/kpis@1.0.0"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("depth=0", "depth"),
        ("depth=11", "depth"),
        ("depth=two", "depth"),
        ("depth=1.5", "depth"),
        ("direction=sideways", "direction"),
    ],
)
def test_lineage_refuses_a_depth_out_of_range_or_an_unknown_direction(
    published, viewer, as_user, query, field
):
    response = as_user(viewer).get(f"{BASE}versions/1.0.0/lineage/?{query}")
    assert response.status_code == 400
    assert field in error_of(response)["details"]


def test_history_of_an_unknown_version_is_a_404(published, viewer, as_user):
    client = as_user(viewer)
    for url in ("versions/4.0.0/changes/", "versions/4.0.0/lineage/"):
        response = client.get(BASE + url)
        assert response.status_code == 404
        error_of(response)


# --- Rollback ---------------------------------------------------------------------------


def test_a_rollback_makes_the_version_current_lists_it_and_is_audited(
    two_versions, steward, viewer, as_user
):
    response = as_user(steward).post(
        f"{BASE}rollback/", {"to": "1.0.0", "reason": "bad day"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    old = DatasetVersion.objects.get(version="1.0.0")
    assert (body["from_version"], body["to_version"]) == ("1.1.0", "1.0.0")
    assert body["sha256"] == old.sha256 and body["actor"] == "stella"
    assert DatasetVersion.objects.get(is_current=True) == old
    assert AuditEntry.objects.filter(action="version.rollback", via="api").exists()
    listed = as_user(viewer).get(f"{BASE}rollbacks/").json()
    assert [(r["to_version"], r["reason"]) for r in listed["results"]] == [("1.0.0", "bad day")]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"to": "3.0.0", "reason": "x"}, "no version"),
        ({"to": "1.1.0", "reason": "x"}, "already the current"),
        ({"to": "1.0.0", "reason": "x"}, "archived"),
        ({"to": "1.0", "reason": "x"}, "version number"),
        ({"to": "1.0.0"}, "reason"),
        ({"to": "1.0.0", "reason": "   "}, "reason"),
        ({"reason": "x"}, "to"),
    ],
)
def test_a_rollback_to_an_unknown_current_or_archived_version_is_a_400(
    two_versions, steward, as_user, body, words
):
    client = as_user(steward)
    archived = client.post(f"{BASE}versions/1.0.0/archive/", {}, format="json")
    assert archived.status_code == 200, archived.content
    response = client.post(f"{BASE}rollback/", body, format="json")
    assert response.status_code == 400, response.content
    assert words in error_of(response)["message"]
    assert DatasetVersion.objects.get(is_current=True).version == "1.1.0"


def test_a_viewer_may_not_roll_back_and_an_outsider_does_not_see_the_dataset(
    two_versions, viewer, outsider, as_user
):
    body = {"to": "1.0.0", "reason": "x"}
    assert as_user(viewer).post(f"{BASE}rollback/", body, format="json").status_code == 403
    # A viewer learns nothing from the body's checks either.
    assert as_user(viewer).post(f"{BASE}rollback/", {}, format="json").status_code == 403
    assert as_user(outsider).post(f"{BASE}rollback/", body, format="json").status_code == 404
    reader = as_user(outsider, scopes=("read",))
    assert reader.get(f"{BASE}rollbacks/").status_code == 404


# --- Drafts and promotion ---------------------------------------------------------------


def test_a_draft_published_through_the_api_is_hidden_from_viewers_until_promoted(
    published, steward, viewer, as_user
):
    steward_client = as_user(steward)
    body = multipart(
        [("version", None, b"1.2.0"), ("draft", None, b"true"), ("file", "d.csv", CSV_2)]
    )
    response = post_multipart(steward_client, body)
    assert response.status_code == 202, response.content
    job = publish_job_run(job_id=response.json()["id"])
    assert job.version.status == "draft" and not job.version.is_current
    assert as_user(viewer).get(f"{BASE}versions/1.2.0/").status_code == 404
    assert as_user(viewer).get(f"{BASE}versions/1.2.0/changes/").status_code == 404
    assert steward_client.get(f"{BASE}versions/1.2.0/").json()["status"] == "draft"

    promoted = steward_client.post(f"{BASE}versions/1.2.0/promote/", {}, format="json")
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["is_current"] and promoted.json()["status"] == "active"
    assert as_user(viewer).get(f"{BASE}versions/1.2.0/").status_code == 200
    assert AuditEntry.objects.filter(action="version.promote", via="api").exists()


def test_promoting_a_draft_now_below_the_current_version_is_a_400(
    published, publish, steward, as_user
):
    publish_as(published, CSV_2, version="1.1.0", draft=True)
    publish(published, CSV_WIDER, version="1.2.0")
    response = as_user(steward).post(f"{BASE}versions/1.1.0/promote/", {}, format="json")
    assert response.status_code == 400
    assert "below the current version 1.2.0" in error_of(response)["message"]


def test_promoting_a_draft_that_now_breaks_the_current_version_names_the_columns(
    published, publish, steward, as_user
):
    publish_as(published, CSV_2, version="1.5.0", draft=True)
    publish(published, CSV_WIDER, version="1.1.0")  # adds `units`, which the draft lacks
    client = as_user(steward)
    response = client.post(f"{BASE}versions/1.5.0/promote/", {}, format="json")
    assert response.status_code == 400
    assert error_of(response)["details"]["breaking_columns"] == ["units"]
    response = client.post(
        f"{BASE}versions/1.5.0/promote/", {"allow_breaking": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["breaking"] is True and response.json()["parent"] == "1.1.0"


def test_only_drafts_are_promoted(published, steward, as_user):
    response = as_user(steward).post(f"{BASE}versions/1.0.0/promote/", {}, format="json")
    assert response.status_code == 400
    assert "not a draft" in error_of(response)["message"]


# --- Deprecation, archive, restore ------------------------------------------------------


def test_every_response_about_a_deprecated_version_carries_the_headers_and_message(
    two_versions, steward, viewer, as_user
):
    response = as_user(steward).post(
        f"{BASE}versions/1.0.0/deprecate/",
        {"message": "Use 1.1.0: the \u201cfixed\u201d revenue.", "sunset": sunset()},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["deprecation"]["message"].startswith("Use 1.1.0")
    client = as_user(viewer)
    answers = [
        client.get(f"{BASE}versions/1.0.0/"),
        client.get(f"{BASE}download/?version=1.0.0"),
        client.get(f"{BASE}raw/?version=1.0.0"),
        client.get(f"{BASE}rows/?version=1.0.0"),
        client.get(f"{BASE}rows/?version=1.0.0&format=csv"),
        client.get(f"{BASE}versions/1.0.0/changes/"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 302), answer.content
        assert answer["Deprecation"].startswith("@")
        assert answer["Sunset"].endswith("GMT")
        assert 'rel="deprecation"' in answer["Link"]
        assert answer["Warning"].startswith('299 - "Deprecated: Use 1.1.0: the ?fixed? revenue.')
    body = answers[0].json()
    assert body["status"] == "deprecated" and body["deprecation"]["sunset"] == sunset()
    current = client.get(f"{BASE}versions/1.1.0/")
    assert "Deprecation" not in current and current.json()["deprecation"] is None
    assert "Deprecation" not in client.get(f"{BASE}download/")

    restored = as_user(steward).post(f"{BASE}versions/1.0.0/restore/", {}, format="json")
    assert restored.status_code == 200 and restored.json()["deprecation"] is None
    assert "Deprecation" not in client.get(f"{BASE}versions/1.0.0/")


@pytest.mark.parametrize(
    ("version", "body", "words"),
    [
        ("1.0.0", {"sunset": "2099-01-01"}, "message"),
        ("1.0.0", {"message": "", "sunset": "2099-01-01"}, "message"),
        ("1.0.0", {"message": "old"}, "sunset"),
        ("1.0.0", {"message": "old", "sunset": "2020-01-01"}, "in the past"),
        ("1.0.0", {"message": "old", "sunset": "01/02/2099"}, "sunset"),
        ("1.1.0", {"message": "old", "sunset": "2099-01-01"}, "current version"),
    ],
)
def test_deprecating_without_a_message_with_a_past_sunset_or_the_current_version_is_a_400(
    two_versions, steward, as_user, version, body, words
):
    response = as_user(steward).post(f"{BASE}versions/{version}/deprecate/", body, format="json")
    assert response.status_code == 400, response.content
    assert words in error_of(response)["message"]


@pytest.mark.parametrize(
    "message",
    [
        "Use 1.1.0\r\nX-Injected: yes",
        "nul\x00byte",
        "bell\x07",
        "del\x7f",
        "tab\there",
        "c1\x85here",
    ],
)
def test_a_deprecation_message_with_control_characters_is_refused_everywhere(
    two_versions, steward, as_user, message
):
    from datetime import date

    from django.core.exceptions import ValidationError

    from catalog.exceptions import InvalidInput
    from versioning.models import DatasetVersion
    from versioning.services import version_deprecate

    response = as_user(steward).post(
        f"{BASE}versions/1.0.0/deprecate/",
        {"message": message, "sunset": sunset()},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "control characters" in error_of(response)["message"].lower()
    version = DatasetVersion.objects.get(version="1.0.0")
    assert version.status == "active"
    with pytest.raises(InvalidInput, match="control characters"):
        version_deprecate(
            version=version,
            message=message,
            sunset=date(2099, 1, 1),
            actor=Actor(user=steward, via="admin"),
        )
    version.deprecation_message = message
    with pytest.raises(ValidationError, match="Control characters"):
        version.full_clean()


def test_a_stored_message_with_control_characters_reaches_the_header_cleaned(
    two_versions, steward, viewer, as_user
):
    from versioning.models import DatasetVersion

    response = as_user(steward).post(
        f"{BASE}versions/1.0.0/deprecate/",
        {"message": "Use 1.1.0", "sunset": sunset()},
        format="json",
    )
    assert response.status_code == 200
    # A row written before the check existed.
    DatasetVersion.objects.filter(version="1.0.0").update(
        deprecation_message="Use\x01 1.1.0\r\nX-Injected: yes\x7f"
    )
    answer = as_user(viewer).get(f"{BASE}versions/1.0.0/")
    assert answer.status_code == 200
    assert answer["Warning"] == '299 - "Deprecated: Use 1.1.0 X-Injected: yes"'
    assert all(32 <= ord(c) < 127 for value in answer.headers.values() for c in value)


def test_an_archived_version_is_downloaded_by_stewards_only(two_versions, steward, viewer, as_user):
    steward_client = as_user(steward)
    response = steward_client.post(f"{BASE}versions/1.0.0/archive/", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "archived"
    viewer_client = as_user(viewer)
    for url in ("download/", "raw/", "rows/"):
        refused = viewer_client.get(f"{BASE}{url}?version=1.0.0")
        assert refused.status_code == 403, url
        assert "archived" in error_of(refused)["message"]
        assert steward_client.get(f"{BASE}{url}?version=1.0.0").status_code in (200, 302), url
    assert viewer_client.get(f"{BASE}versions/1.0.0/").json()["status"] == "archived"
    again = steward_client.post(f"{BASE}versions/1.0.0/archive/", {}, format="json")
    assert again.status_code == 400

    assert steward_client.post(f"{BASE}versions/1.0.0/restore/").status_code == 200
    assert viewer_client.get(f"{BASE}download/?version=1.0.0").status_code == 200
    actions = set(AuditEntry.objects.filter(via="api").values_list("action", flat=True))
    assert {"version.archive", "version.restore"} <= actions


def test_the_current_version_cannot_be_archived_and_viewers_may_not_try(
    two_versions, steward, viewer, as_user
):
    response = as_user(steward).post(f"{BASE}versions/1.1.0/archive/", {}, format="json")
    assert response.status_code == 400
    for action in ("archive", "restore", "promote", "deprecate"):
        url = f"{BASE}versions/1.0.0/{action}/"
        assert as_user(viewer).post(url, {}, format="json").status_code == 403, action


# --- Publishing with flags --------------------------------------------------------------


def test_inputs_come_as_repeated_fields_or_comma_separated_in_a_form(
    acme, system, published, steward, as_user
):
    other = dataset_create(organization=acme, layer="silver", name="stores", actor=system)
    publish_as(other, CSV)
    platinum = dataset_create(organization=acme, layer="platinum", name="kpis", actor=system)
    body = multipart(
        [
            ("inputs", None, b"gold/txn_daily@1.0.0"),
            ("inputs", None, b"silver/stores@1.0.0, gold/txn_daily"),
            ("file", "k.csv", CSV),
        ]
    )
    url = "/api/v1/datasets/platinum/kpis/versions/"
    response = post_multipart(as_user(steward), body, url=url)
    assert response.status_code == 202, response.content
    job = PublishJob.objects.get(pk=response.json()["id"])
    assert job.inputs == ["gold/txn_daily@1.0.0", "silver/stores@1.0.0"]
    version = publish_job_run(job_id=job.pk).version
    assert version.dataset == platinum
    assert sorted(i.upstream.dataset.path for i in version.inputs.all()) == [
        "gold/txn_daily",
        "silver/stores",
    ]


def test_json_takes_inputs_as_a_list_and_the_breaking_and_draft_flags(published, steward, as_user):
    from catalog.storage import get_object_store

    get_object_store().write("acme/incoming/day.csv", io.BytesIO(CSV_2))
    response = as_user(steward).post(
        f"{BASE}versions/",
        {
            "object_key": "acme/incoming/day.csv",
            "version": "1.1.0-rc.1",
            "allow_breaking": True,
            "draft": True,
            "inputs": [],
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    job = PublishJob.objects.get(pk=response.json()["id"])
    assert job.allow_breaking and job.draft
    not_a_list = as_user(steward).post(
        f"{BASE}versions/",
        {"object_key": "acme/incoming/day.csv", "inputs": "gold/x@1.0.0"},
        format="json",
    )
    assert not_a_list.status_code == 400
    assert "inputs" in error_of(not_a_list)["details"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ([("inputs", None, b"gold/nothing@1.0.0")], "no dataset gold/nothing"),
        ([("inputs", None, b"silver/stores@9.0.0")], "no version 9.0.0"),
        ([("inputs", None, b"gold/txn_daily@1.0.0")], "the dataset being published"),
        ([("inputs", None, b"not an input")], "not of the form"),
        ([("version", None, b"1.x")], "1.x"),
        ([("version", None, b"1.0.0")], "not above"),
        ([("version", None, b"2.0.0")], "already has a version 2.0.0"),
        ([("draft", None, b"perhaps")], "draft"),
    ],
)
def test_a_bad_input_or_a_malformed_or_duplicate_version_is_refused_before_the_upload(
    acme, system, published, publish, steward, as_user, stray_uploads, fields, words
):
    stores = dataset_create(organization=acme, layer="silver", name="stores", actor=system)
    publish_as(stores, CSV)
    # 2.0.0 exists but is not current (a rollback went back to 1.0.0): a duplicate.
    publish(published, CSV_2, version="2.0.0")
    as_user(steward).post(f"{BASE}rollback/", {"to": "1.0.0", "reason": "x"}, format="json")
    jobs = PublishJob.objects.count()
    response = post_multipart(as_user(steward), multipart([*fields, ("file", "d.csv", CSV_2)]))
    assert response.status_code == 400, response.content
    assert words in error_of(response)["message"]
    assert PublishJob.objects.count() == jobs
    assert stray_uploads() == []


# --- The dataset's compatibility mode ---------------------------------------------------


def test_stewards_see_and_change_the_compatibility_mode(dataset, steward, viewer, as_user):
    assert as_user(viewer).get(BASE).json()["compatibility"] == "major"
    response = as_user(steward).patch(BASE, {"compatibility": "strict"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["compatibility"] == "strict"
    assert as_user(viewer).patch(BASE, {"compatibility": "none"}, format="json").status_code == 403
    bad = as_user(steward).patch(BASE, {"compatibility": "loose"}, format="json")
    assert bad.status_code == 400 and "compatibility" in error_of(bad)["details"]


# --- Caches see every change at once ----------------------------------------------------


def test_list_manifest_and_detail_show_each_steward_action_on_the_very_next_call(
    two_versions, publish, steward, viewer, as_user
):
    publish_as(two_versions, CSV_2 + CSV_2[-27:], version="1.2.0", draft=True)
    actor, reader = as_user(steward), as_user(viewer)

    def seen() -> tuple:
        listed = reader.get("/api/v1/datasets/").json()["results"][0]["current_version"]
        manifest = reader.get("/api/v1/manifest/").json()["datasets"]["gold/txn_daily"]
        detail = reader.get(BASE).json()["current_version"]
        old = reader.get(f"{BASE}versions/1.0.0/").json()["status"]
        return listed["version"], manifest["schema_version"], detail["version"], old

    assert seen() == ("1.1.0", "1.1.0", "1.1.0", "active")
    steps = [
        ("rollback/", {"to": "1.0.0", "reason": "x"}, ("1.0.0", "1.0.0", "1.0.0", "active")),
        ("versions/1.2.0/promote/", {}, ("1.2.0", "1.2.0", "1.2.0", "active")),
        (
            "versions/1.0.0/deprecate/",
            {"message": "old", "sunset": sunset()},
            ("1.2.0", "1.2.0", "1.2.0", "deprecated"),
        ),
        ("versions/1.0.0/restore/", {}, ("1.2.0", "1.2.0", "1.2.0", "active")),
        ("versions/1.0.0/archive/", {}, ("1.2.0", "1.2.0", "1.2.0", "archived")),
    ]
    for url, body, expected in steps:
        response = actor.post(BASE + url, body, format="json")
        assert response.status_code in (200, 201), (url, response.content)
        assert seen() == expected, url


# --- Done when: the demo catalog ---------------------------------------------------------


def test_demo_catalog_dropped_column_needs_a_major_rollback_reaches_manifest_lineage_shows_gold(
    as_user, django_user_model
):
    """On the demo catalog: a file without one column is refused as a minor and taken as
    2.0.0, breaking, with the column in its changelog; a rollback is in the very next
    manifest; a platinum dataset's lineage shows its gold inputs."""
    from django.core.management import call_command

    from versioning.demo import DATASETS, demo_csv

    call_command("demo", stdout=io.StringIO())
    client = as_user(django_user_model.objects.get(username="steward"))
    spec = next(s for s in DATASETS if (s.layer, s.name) == ("gold", "txn_daily"))
    dropped = spec.columns[-1]
    data = without_column(demo_csv(spec, rows=spec.rows + 500, seed=2), dropped)

    def publish_over_api(version: str) -> dict:
        body = multipart(
            [("version", None, version.encode()), ("note", None, b"x"), ("file", "t.csv", data)]
        )
        response = post_multipart(client, body)
        assert response.status_code == 202, response.content
        publish_job_run(job_id=response.json()["id"])
        return client.get(response.json()["url"]).json()

    # Claimed as a minor: the worker's version check refuses it, naming the column.
    refused = publish_over_api("1.2.0")
    assert refused["status"] == "failed" and refused["error_code"] == "invalid"
    assert dropped in refused["message"] and "breaking" in refused["message"]
    assert refused["error_details"]["breaking_columns"] == [dropped]
    assert client.get(f"{BASE}versions/1.2.0/").status_code == 404

    accepted = publish_over_api("2.0.0")
    assert accepted["status"] == "succeeded", accepted["message"]
    version = client.get(f"{BASE}versions/2.0.0/").json()
    assert version["breaking"] is True and version["change_type"] == "major"
    assert version["parent"] == "1.1.0"
    changes = client.get(f"{BASE}versions/2.0.0/changes/").json()
    removed = [e for e in changes["entries"] if e["kind"] == "column_removed"]
    assert [e["column"] for e in removed] == [dropped] and dropped in removed[0]["text"]

    previous = client.get(f"{BASE}versions/1.1.0/").json()["sha256"]
    assert client.get("/api/v1/manifest/").json()["datasets"]["gold/txn_daily"]["sha256"] != (
        previous
    )
    rollback = client.post(f"{BASE}rollback/", {"to": "1.1.0", "reason": "x"}, format="json")
    assert rollback.status_code == 201, rollback.content
    manifest = client.get("/api/v1/manifest/").json()["datasets"]["gold/txn_daily"]
    assert manifest["sha256"] == previous and manifest["schema_version"] == "1.1.0"

    lineage = client.get(
        "/api/v1/datasets/platinum/features_sales_7d/versions/1.0.0/lineage/?depth=1"
    ).json()
    upstream = {n["id"] for n in lineage["nodes"] if n["distance"] == 1}
    assert upstream == {"gold/txn_daily@1.1.0", "gold/product_mix@1.0.0"}
    assert all(edge["to"] == "platinum/features_sales_7d@1.0.0" for edge in lineage["edges"])
