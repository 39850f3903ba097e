"""Lineage: which versions a version was built from, the graph around a version, and the
OpenLineage run event sent for each publish.

A publish names its inputs as `<layer>/<name>@<version>` (or `<layer>/<name>` for that
dataset's current version), all in the publishing dataset's organisation. They are
checked and pinned to exact versions when the job is created, kept on the job, and turned
into `VersionInput` edges in the transaction that records the version. An edge only ever
points at a version that existed before the one it leads to, so the graph is acyclic;
naming the dataset being published as its own input is refused.

OpenLineage (openlineage.io): after commit, the outbox hands each `version.published`
event to `openlineage_emit`, which sends one `COMPLETE` run event (the inputs, the output
dataset with its schema, version and statistics as facets) to OPENLINEAGE_URL and/or
appends it to OPENLINEAGE_FILE. The event is built from the `openlineage-python`
client's classes, which check it as it is built; the client's transports send it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence

from django.conf import settings

from catalog.exceptions import InvalidInput
from catalog.models import Dataset
from catalog.selectors import datasets_visible_to
from versioning.manifest import isoformat_z
from versioning.models import DatasetVersion, VersionInput

logger = logging.getLogger(__name__)

MAX_INPUTS = 100
MAX_DEPTH = 10
DIRECTIONS = ("upstream", "downstream")
_INPUT = re.compile(r"^(?P<layer>[a-z]+)/(?P<name>[^/@\s]+)(?:@(?P<version>[^@\s]+))?$")


# --- Inputs of a publish --------------------------------------------------------------


def inputs_resolve(*, dataset: Dataset, inputs: Iterable[str]) -> list[DatasetVersion]:
    """Checks each input and returns the versions they name, in order, without repeats.

    Raises InvalidInput, naming the entry, for a malformed entry, an unknown dataset or
    version, or the dataset being published itself.
    """
    from versioning.semver import parse_version

    entries = [str(e).strip() for e in inputs if str(e).strip()]
    if len(entries) > MAX_INPUTS:
        raise InvalidInput(f"A publish names at most {MAX_INPUTS} inputs, not {len(entries)}.")
    resolved: list[DatasetVersion] = []
    for entry in entries:
        match = _INPUT.match(entry)
        if match is None:
            raise InvalidInput(
                f"Input {entry!r} is not of the form <layer>/<name>@<version>, "
                "e.g. gold/txn_daily@1.2.0."
            )
        layer, name, wanted = match["layer"], match["name"], match["version"]
        if (layer, name) == (dataset.layer, dataset.name):
            raise InvalidInput(
                f"Input {entry!r} is the dataset being published: a version cannot be built "
                "from its own dataset (that would be a cycle)."
            )
        source = Dataset.objects.filter(
            organization_id=dataset.organization_id, layer=layer, name=name
        ).first()
        if source is None:
            raise InvalidInput(
                f"Input {entry!r}: {dataset.organization.slug} has no dataset {layer}/{name}."
            )
        versions = DatasetVersion.objects.select_related("dataset").filter(dataset=source)
        if wanted:
            try:
                number = str(parse_version(wanted))
            except InvalidInput:
                raise InvalidInput(
                    f"Input {entry!r}: {wanted!r} is not a semantic version."
                ) from None
            found = versions.filter(version=number).first()
            if found is None:
                raise InvalidInput(f"Input {entry!r}: {layer}/{name} has no version {wanted}.")
        else:
            found = versions.filter(is_current=True).first()
            if found is None:
                raise InvalidInput(f"Input {entry!r}: {layer}/{name} has no current version.")
        if all(found.pk != r.pk for r in resolved):
            resolved.append(found)
    return resolved


def input_label(version: DatasetVersion) -> str:
    return f"{version.dataset.path}@{version.version}"


def inputs_record(*, version: DatasetVersion, inputs: Sequence[str]) -> list[VersionInput]:
    """Writes the lineage edges of a new version; call it in the transaction that records
    the version. The inputs were pinned when the job was created."""
    if not inputs:
        return []
    upstream = inputs_resolve(dataset=version.dataset, inputs=inputs)
    return VersionInput.objects.bulk_create(
        VersionInput(version=version, upstream=u) for u in upstream
    )


# --- The graph ------------------------------------------------------------------------


def lineage_graph(
    *, version: DatasetVersion, direction: str = "upstream", depth: int = 3, user=None
) -> dict:
    """The lineage graph around `version`, as `?direction=upstream|downstream&depth=3`
    answers it: the versions within `depth` steps (each with its distance) and the edges
    between them, `from` the input `to` the version built from it.

    With a `user`, versions of datasets that user may not see are left out, with their
    edges. One query per step, one for the versions, one for visibility.
    """
    if direction not in DIRECTIONS:
        raise InvalidInput(f"direction must be upstream or downstream, not {direction!r}.")
    try:
        depth = int(depth)
    except (TypeError, ValueError):
        raise InvalidInput(f"depth must be a whole number, not {depth!r}.") from None
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be between 1 and {MAX_DEPTH}, not {depth}.")
    distance = {version.pk: 0}
    edges: set[tuple[int, int]] = set()
    frontier = {version.pk}
    for step in range(1, depth + 1):
        if not frontier:
            break
        if direction == "upstream":
            pairs = VersionInput.objects.filter(version_id__in=frontier)
        else:
            pairs = VersionInput.objects.filter(upstream_id__in=frontier)
        found: set[int] = set()
        for upstream_id, version_id in pairs.values_list("upstream_id", "version_id"):
            edges.add((upstream_id, version_id))
            reached = upstream_id if direction == "upstream" else version_id
            if reached not in distance:
                distance[reached] = step
                found.add(reached)
        frontier = found
    versions = DatasetVersion.objects.select_related("dataset").filter(pk__in=distance)
    if user is not None:
        versions = versions.filter(dataset__in=datasets_visible_to(user))
    by_id = {v.pk: v for v in versions}
    nodes = sorted(by_id.values(), key=lambda v: (distance[v.pk], v.dataset.path, v.version))
    return {
        "root": input_label(version),
        "direction": direction,
        "depth": depth,
        "nodes": [
            {
                "id": input_label(v),
                "dataset": v.dataset.path,
                "version": v.version,
                "status": v.status,
                "is_current": v.is_current,
                "distance": distance[v.pk],
            }
            for v in nodes
        ],
        "edges": sorted(
            (
                {"from": input_label(by_id[a]), "to": input_label(by_id[b])}
                for a, b in edges
                if a in by_id and b in by_id
            ),
            key=lambda e: (e["from"], e["to"]),
        ),
    }


# --- OpenLineage ----------------------------------------------------------------------

# Schema facet types: OpenLineage leaves them free; these are the SQL names its
# consumers (Marquez, ...) show best.
_OPENLINEAGE_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "string": "VARCHAR",
}
_RUN_NAMESPACE = uuid.UUID("5b0d2c2e-6f1e-4d0e-9a38-7d4c0c2f2a11")


def openlineage_enabled() -> bool:
    return bool(settings.OPENLINEAGE_URL or settings.OPENLINEAGE_FILE)


def _dataset_namespace(version: DatasetVersion) -> str:
    return f"{settings.OPENLINEAGE_NAMESPACE}/{version.dataset.organization.slug}"


def _schema_facet(version: DatasetVersion):
    from openlineage.client.generated.schema_dataset import (
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    return SchemaDatasetFacet(
        fields=[
            SchemaDatasetFacetFields(
                name=c["name"],
                type=_OPENLINEAGE_TYPES.get(c["type"], "VARCHAR"),
                ordinal_position=i,
            )
            for i, c in enumerate(version.schema, start=1)
        ]
    )


def _dataset_facets(version: DatasetVersion) -> dict:
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    return {
        "schema": _schema_facet(version),
        "version": DatasetVersionDatasetFacet(datasetVersion=version.version),
    }


def openlineage_event_build(*, version: DatasetVersion):
    """The `COMPLETE` run event of the publish that produced `version`. Its run id is
    derived from the version, so a redelivered event describes the same run."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.generated.job_type_job import JobTypeJobFacet
    from openlineage.client.generated.output_statistics_output_dataset import (
        OutputStatisticsOutputDatasetFacet,
    )

    upstream = [
        edge.upstream
        for edge in version.inputs.select_related("upstream__dataset__organization").order_by("id")
    ]
    dataset = version.dataset
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=isoformat_z(version.published_at),
        producer=settings.OPENLINEAGE_PRODUCER,
        run=Run(runId=str(uuid.uuid5(_RUN_NAMESPACE, f"version:{version.pk}"))),
        job=Job(
            namespace=settings.OPENLINEAGE_NAMESPACE,
            name=f"publish.{dataset.organization.slug}.{dataset.layer}.{dataset.name}",
            facets={
                "jobType": JobTypeJobFacet(
                    processingType="BATCH", integration="DATASET_PUBLISHER", jobType="PUBLISH"
                )
            },
        ),
        inputs=[
            InputDataset(
                namespace=_dataset_namespace(u), name=u.dataset.path, facets=_dataset_facets(u)
            )
            for u in upstream
        ],
        outputs=[
            OutputDataset(
                namespace=_dataset_namespace(version),
                name=dataset.path,
                facets=_dataset_facets(version),
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(
                        rowCount=version.row_count, size=version.size_bytes
                    )
                },
            )
        ],
    )


def _transports() -> list:
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    transports = []
    if settings.OPENLINEAGE_URL:
        transports.append(
            HttpTransport(
                HttpConfig(
                    url=settings.OPENLINEAGE_URL,
                    endpoint=settings.OPENLINEAGE_ENDPOINT,
                    timeout=settings.OPENLINEAGE_TIMEOUT,
                    # The outbox retries with backoff; the client only rides out a blip.
                    retry={"total": 1, "connect": 1, "read": 1, "backoff_factor": 0.2},
                )
            )
        )
    if settings.OPENLINEAGE_FILE:
        transports.append(
            FileTransport(FileConfig(log_file_path=settings.OPENLINEAGE_FILE, append=True))
        )
    return transports


def openlineage_emit(*, version: DatasetVersion) -> bool:
    """Sends the run event of `version` to every configured destination; False when none
    is configured. Raises when a destination fails, so the outbox tries again later."""
    if not openlineage_enabled():
        return False
    from openlineage.client import OpenLineageClient

    event = openlineage_event_build(version=version)
    for transport in _transports():
        OpenLineageClient(transport=transport).emit(event)
    return True
