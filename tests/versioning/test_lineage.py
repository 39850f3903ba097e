"""Lineage: inputs named at publish become version-to-version edges; the graph around a
version; the OpenLineage run event sent after each publish."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from catalog import events
from catalog.exceptions import InvalidInput
from catalog.models import DomainEvent, EventDelivery
from tests.versioning.conftest import base_csv
from versioning.handlers import emit_openlineage
from versioning.models import JobStatus, PublishJob, VersionInput
from versioning.services import lineage_graph

pytestmark = pytest.mark.django_db


@pytest.fixture
def graph(dataset, acme, system, publish_with):
    """gold/txn_daily and gold/product_mix -> platinum/features_sales_7d -> platinum/scores."""
    from catalog.services import dataset_create

    def make(layer, name):
        return dataset_create(organization=acme, layer=layer, name=name, actor=system)

    txn = publish_with(dataset, base_csv()).version
    mix = publish_with(make("gold", "product_mix"), base_csv()).version
    features = publish_with(
        make("platinum", "features_sales_7d"),
        base_csv(),
        inputs=["gold/txn_daily@1.0.0", "gold/product_mix"],
    )
    assert features.status == JobStatus.SUCCEEDED, features.message
    scores = publish_with(
        make("platinum", "scores"), base_csv(), inputs=["platinum/features_sales_7d@1.0.0"]
    ).version
    return txn, mix, features.version, scores


def test_inputs_are_pinned_on_the_job_and_stored_as_edges(graph):
    txn, mix, features, _ = graph
    job = PublishJob.objects.get(version=features)
    assert job.inputs == ["gold/txn_daily@1.0.0", "gold/product_mix@1.0.0"]
    assert {e.upstream for e in VersionInput.objects.filter(version=features)} == {txn, mix}
    event = DomainEvent.objects.get(topic="version.published", payload__version_id=features.pk)
    assert event.payload["inputs"] == job.inputs


def test_the_graph_answers_upstream_to_the_depth_asked(graph):
    txn, mix, features, scores = graph
    one = lineage_graph(version=scores, direction="upstream", depth=1)
    assert [n["id"] for n in one["nodes"]] == [
        "platinum/scores@1.0.0",
        "platinum/features_sales_7d@1.0.0",
    ]
    three = lineage_graph(version=scores, direction="upstream", depth=3)
    assert {n["id"]: n["distance"] for n in three["nodes"]} == {
        "platinum/scores@1.0.0": 0,
        "platinum/features_sales_7d@1.0.0": 1,
        "gold/product_mix@1.0.0": 2,
        "gold/txn_daily@1.0.0": 2,
    }
    assert three["edges"] == [
        {"from": "gold/product_mix@1.0.0", "to": "platinum/features_sales_7d@1.0.0"},
        {"from": "gold/txn_daily@1.0.0", "to": "platinum/features_sales_7d@1.0.0"},
        {"from": "platinum/features_sales_7d@1.0.0", "to": "platinum/scores@1.0.0"},
    ]


def test_the_graph_answers_downstream(graph, django_assert_max_num_queries):
    txn, _, _, _ = graph
    with django_assert_max_num_queries(5):
        down = lineage_graph(version=txn, direction="downstream", depth=3)
    assert [n["id"] for n in down["nodes"]] == [
        "gold/txn_daily@1.0.0",
        "platinum/features_sales_7d@1.0.0",
        "platinum/scores@1.0.0",
    ]


def test_the_graph_leaves_out_what_the_user_may_not_see(graph, outsider):
    _, _, _, scores = graph
    assert lineage_graph(version=scores, depth=3, user=outsider)["nodes"] == []


@pytest.fixture
def one(dataset, acme, system, publish_with):
    """gold/txn_daily 1.0.0, and platinum/features_sales_7d with nothing published yet."""
    from catalog.services import dataset_create

    txn = publish_with(dataset, base_csv()).version
    features = dataset_create(
        organization=acme, layer="platinum", name="features_sales_7d", actor=system
    )
    return txn, features


@pytest.mark.parametrize(
    "direction, depth", [("sideways", 3), ("upstream", 0), ("upstream", 11), ("upstream", "x")]
)
def test_the_graph_refuses_a_bad_direction_or_depth(one, direction, depth):
    with pytest.raises(InvalidInput):
        lineage_graph(version=one[0], direction=direction, depth=depth)


@pytest.mark.parametrize(
    "entry, error",
    [
        ("gold/nothing@1.0.0", "has no dataset gold/nothing"),
        ("gold/txn_daily@9.0.0", "has no version 9.0.0"),
        ("gold/txn_daily@banana", "not a semantic version"),
        ("platinum/features_sales_7d@1.0.0", "the dataset being published"),
        ("platinum/features_sales_7d", "the dataset being published"),
        ("txn_daily", "not of the form"),
        ("gold/txn_daily@1.0.0@2", "not of the form"),
    ],
)
def test_a_bad_input_is_refused_before_anything_is_queued(one, publish_with, entry, error):
    _, features = one
    with pytest.raises(InvalidInput, match=error):
        publish_with(features, base_csv(), inputs=["gold/txn_daily@1.0.0", entry])
    assert not PublishJob.objects.filter(dataset=features).exists()


def test_an_input_without_a_current_version_is_refused(dataset, acme, system, publish_with):
    from catalog.services import dataset_create

    empty = dataset_create(organization=acme, layer="gold", name="empty", actor=system)
    with pytest.raises(InvalidInput, match="has no current version"):
        publish_with(dataset, base_csv(), inputs=["gold/empty"])
    assert empty.pk


# --- OpenLineage ----------------------------------------------------------------------


def rebuild(body: dict):
    """Builds the event again from its JSON with the client's own classes, whose
    validators check it (event time, run id, URIs) as they are constructed."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.job_type_job import JobTypeJobFacet
    from openlineage.client.generated.output_statistics_output_dataset import (
        OutputStatisticsOutputDatasetFacet,
    )
    from openlineage.client.generated.schema_dataset import (
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from openlineage.client.generated.tags_run import TagsRunFacet, TagsRunFacetFields

    def facets(raw):
        return {
            "schema": SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(**f) for f in raw["schema"]["fields"]]
            ),
            "version": DatasetVersionDatasetFacet(datasetVersion=raw["version"]["datasetVersion"]),
        }

    job_type = body["job"]["facets"]["jobType"]
    return RunEvent(
        eventType=RunState(body["eventType"]),
        eventTime=body["eventTime"],
        producer=body["producer"],
        run=Run(
            runId=body["run"]["runId"],
            # The client adds its own version as a tag.
            facets={
                "tags": TagsRunFacet(
                    tags=[TagsRunFacetFields(**t) for t in body["run"]["facets"]["tags"]["tags"]]
                )
            },
        ),
        job=Job(
            namespace=body["job"]["namespace"],
            name=body["job"]["name"],
            facets={
                "jobType": JobTypeJobFacet(
                    processingType=job_type["processingType"],
                    integration=job_type["integration"],
                    jobType=job_type["jobType"],
                )
            },
        ),
        inputs=[
            InputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d["facets"]))
            for d in body["inputs"]
        ],
        outputs=[
            OutputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=facets(d["facets"]),
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(
                        **{
                            k: v
                            for k, v in d["outputFacets"]["outputStatistics"].items()
                            if not k.startswith("_")
                        }
                    )
                },
            )
            for d in body["outputs"]
        ],
    )


def published_event(version):
    return DomainEvent.objects.get(topic="version.published", payload__version_id=version.pk)


def test_the_openlineage_event_goes_to_a_file_and_parses_with_the_clients_classes(
    graph, settings, tmp_path
):
    from openlineage.client.serde import Serde

    _, _, features, _ = graph
    settings.OPENLINEAGE_FILE = str(tmp_path / "lineage.jsonl")
    emit_openlineage(published_event(features))
    emit_openlineage(published_event(features))  # a redelivery describes the same run

    lines = (tmp_path / "lineage.jsonl").read_text().splitlines()
    assert len(lines) == 2
    body = json.loads(lines[0])
    assert Serde.to_dict(rebuild(body)) == body
    assert body["schemaURL"].startswith("https://openlineage.io/spec/")
    assert body["eventType"] == "COMPLETE"
    assert json.loads(lines[1])["run"]["runId"] == body["run"]["runId"]
    assert [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in body["inputs"]] == [
        ("gold/txn_daily", "1.0.0"),
        ("gold/product_mix", "1.0.0"),
    ]
    (output,) = body["outputs"]
    assert (output["namespace"], output["name"]) == (
        "dataset-publisher/acme",
        "platinum/features_sales_7d",
    )
    assert [f["name"] for f in output["facets"]["schema"]["fields"]] == [
        "date_key",
        "store_id",
        "revenue",
        "units",
    ]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 3


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server hook
        length = int(self.headers["Content-Length"])
        _Receiver.bodies.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_openlineage_event_is_posted_to_the_configured_endpoint(graph, settings, receiver):
    _, _, features, _ = graph
    settings.OPENLINEAGE_URL = f"http://127.0.0.1:{receiver.server_port}"
    emit_openlineage(published_event(features))
    (received,) = _Receiver.bodies
    assert received["path"] == "/api/v1/lineage"
    assert received["body"]["outputs"][0]["name"] == "platinum/features_sales_7d"


def test_a_failure_to_emit_never_fails_the_publish_and_is_retried_by_the_outbox(
    dataset, publish_with, settings, receiver
):
    port = receiver.server_port
    receiver.shutdown()
    receiver.server_close()  # nothing listens there any more
    settings.OPENLINEAGE_URL = f"http://127.0.0.1:{port}"
    job = publish_with(dataset, base_csv())
    assert job.status == JobStatus.SUCCEEDED
    delivery = EventDelivery.objects.get(
        event__topic="version.published", handler="versioning.handlers.emit_openlineage"
    )
    assert events.events_deliver(delivery_ids=[delivery.pk]) == 0
    delivery.refresh_from_db()
    assert delivery.delivered_at is None and delivery.failed_at is None
    assert delivery.attempts == 1 and delivery.last_error
    assert job.version.is_current


def test_with_nothing_configured_no_event_is_sent(graph, settings, tmp_path):
    settings.OPENLINEAGE_URL = ""
    settings.OPENLINEAGE_FILE = ""
    emit_openlineage(published_event(graph[2]))
    assert list(tmp_path.iterdir()) == []
