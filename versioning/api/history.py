"""A dataset's history in the API: what changed in a version, the diff between any two,
lineage, rollbacks, and the steward actions on versions (promote, deprecate, archive,
restore).

Every view is thin, as in `views`: the dataset comes from `dataset_for_request` (404 for
one the caller may not see), the query or body from an input serializer, the work from a
service in `versioning.services`, the answer from an output serializer. Drafts are
treated as missing for callers who are not stewards, as everywhere else.

Writes need the publish scope (admin includes it) and the steward role, checked before
the body is, so that a member without the role learns nothing from the messages. The
services check the role again and write the audit log and the domain events; those
events move the catalog's cache generations, so the next list, manifest or detail call
already shows the change.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.errors import error_responses
from catalog.api.permissions import device_refuse
from catalog.audit import Actor
from catalog.exceptions import InvalidInput, NotFound
from catalog.models import Dataset, TokenScope
from catalog.selectors import user_can_steward
from catalog.services import ensure_steward
from versioning.api.deprecation import deprecation_headers
from versioning.api.history_serializers import (
    DeprecateInput,
    DiffQuery,
    DiffSerializer,
    LineageQuery,
    LineageSerializer,
    PromoteInput,
    RollbackInput,
    RollbackSerializer,
    VersionChangesSerializer,
)
from versioning.api.serializers import VersionSerializer
from versioning.api.views import DATASET_PARAMETERS, DatasetScoped
from versioning.models import DatasetRollback, DatasetVersion, VersionStatus
from versioning.services import (
    dataset_rollback,
    lineage_graph,
    rollbacks_of,
    version_archive,
    version_changes,
    version_deprecate,
    version_get,
    version_promote,
    version_restore,
    versions_diff,
)

VERSION_PARAMETERS = [
    *DATASET_PARAMETERS,
    OpenApiParameter(
        "version",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        pattern=r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,50})?$",
        description="A semantic version, e.g. 1.2.0.",
    ),
]
READ = {"GET": TokenScope.READ}
STEWARD_WRITE = {"POST": TokenScope.PUBLISH}


def _find_version(request, dataset: Dataset, number: str) -> DatasetVersion | None:
    """The version as the caller may see it: drafts only for stewards."""
    try:
        found = version_get(dataset=dataset, version=number)
    except NotFound:
        return None
    if found.status == VersionStatus.DRAFT and not (
        request.user.is_authenticated and user_can_steward(request.user, dataset.organization)
    ):
        return None
    return found


class VersionScoped(DatasetScoped):
    """Views under `.../versions/<version>/`."""

    def get_version(self) -> DatasetVersion:
        dataset = self.get_dataset()
        found = _find_version(self.request, dataset, self.kwargs["version"])
        if found is None:
            raise NotFound(f"{dataset.path} has no version {self.kwargs['version']!r}.")
        return found

    def version_response(self, version: DatasetVersion) -> Response:
        body = VersionSerializer(version, context={"dataset": self.get_dataset()}).data
        return Response(body, headers=deprecation_headers(version))


class StewardAction:
    """A POST of a steward: signed in, publish scope (the permission class), steward of
    the dataset's organisation; checked in that order, before the body."""

    anonymous_read = False
    required_scopes = STEWARD_WRITE
    parser_classes = [JSONParser]

    device_action = "act as a steward"

    def steward_actor(self, dataset: Dataset) -> Actor:
        if not self.request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        device_refuse(self.request, self.device_action)
        actor = Actor.from_request(self.request, via="api")
        ensure_steward(actor=actor, organization=dataset.organization)
        return actor


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Reads ------------------------------------------------------------------------------


class VersionChangesView(VersionScoped, APIView):
    required_scopes = READ

    @extend_schema(
        summary="What changed in a version",
        description=(
            "The version's classification (patch, minor, major; breaking or not), its "
            "changelog entries in order (written automatically from the schema diff, then "
            "any override of the compatibility check, then the steward's note) and the "
            "structured diff against the version it replaced."
        ),
        parameters=VERSION_PARAMETERS,
        responses={200: VersionChangesSerializer, **error_responses(401, 403, 404, 429)},
    )
    def get(self, request, **kwargs):
        version = self.get_version()
        body = VersionChangesSerializer(version_changes(version=version)).data
        return Response(body, headers=deprecation_headers(version))


class VersionsDiffView(DatasetScoped, APIView):
    required_scopes = READ

    @extend_schema(
        summary="The schema diff between two versions",
        description=(
            "Columns added, removed, retyped (widened or breaking) and newly holding empty "
            "values, column order, and the row and size deltas, from `from` to `to`. A "
            "version that does not exist (or that you may not see) is a 400 naming it."
        ),
        parameters=[*DATASET_PARAMETERS, DiffQuery],
        responses={200: DiffSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, **kwargs):
        dataset = self.get_dataset()
        query = _valid(DiffQuery, request.query_params)
        for field in ("from", "to"):
            if _find_version(request, dataset, query[field]) is None:
                raise InvalidInput(
                    f"{field}: {dataset.path} has no version {query[field]!r}.",
                    details={"field": field},
                )
        diff = versions_diff(dataset=dataset, from_version=query["from"], to_version=query["to"])
        return Response(DiffSerializer(diff.as_dict()).data)


class VersionLineageView(VersionScoped, APIView):
    required_scopes = READ

    @extend_schema(
        summary="The lineage graph around a version",
        description=(
            "The versions within `depth` steps upstream (what it was built from) or "
            "downstream (what was built from it), each with its distance, and the edges "
            "between them, `from` an input `to` the version built from it. Versions of "
            "datasets you may not see are left out, with their edges."
        ),
        parameters=[*VERSION_PARAMETERS, LineageQuery],
        responses={200: LineageSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, **kwargs):
        version = self.get_version()
        query = _valid(LineageQuery, request.query_params)
        graph = lineage_graph(
            version=version, direction=query["direction"], depth=query["depth"], user=request.user
        )
        return Response(LineageSerializer(graph).data)


# --- Rollback ---------------------------------------------------------------------------


class RollbackView(StewardAction, DatasetScoped, APIView):
    device_action = "roll back"

    @extend_schema(
        summary="Roll back: make another published version current again",
        description=(
            "Nothing is copied or deleted: the manifest lists the target's key and SHA-256 "
            "again at once, and subscribers are told. Rolling forward is a rollback too. "
            "Refused (400) for an unknown version, the current one, a draft (promote it) "
            "and an archived or deprecated one (restore it first). Stewards only."
        ),
        parameters=DATASET_PARAMETERS,
        request=RollbackInput,
        responses={201: RollbackSerializer, **error_responses(400, 401, 403, 404, 409, 429)},
    )
    def post(self, request, **kwargs):
        dataset = self.get_dataset()
        actor = self.steward_actor(dataset)
        data = _valid(RollbackInput, request.data)
        if _find_version(request, dataset, data["to"]) is None:
            raise InvalidInput(
                f"to: {dataset.path} has no version {data['to']!r}.", details={"field": "to"}
            )
        rollback = dataset_rollback(
            dataset=dataset, to=data["to"], reason=data["reason"], actor=actor
        )
        rollback = DatasetRollback.objects.select_related(
            "dataset", "from_version", "to_version"
        ).get(pk=rollback.pk)
        return Response(RollbackSerializer(rollback).data, status=status.HTTP_201_CREATED)


class RollbackListView(DatasetScoped, generics.ListAPIView):
    required_scopes = READ
    serializer_class = RollbackSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DatasetRollback.objects.none()
        return rollbacks_of(dataset=self.get_dataset()).select_related("dataset")

    @extend_schema(
        summary="Rollbacks of a dataset, newest first",
        parameters=DATASET_PARAMETERS,
        responses={
            200: RollbackSerializer(many=True),
            **error_responses(400, 401, 403, 404, 429),
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- The lifecycle of a version ---------------------------------------------------------

_ACTION_ERRORS = error_responses(400, 401, 403, 404, 409, 429)


class VersionPromoteView(StewardAction, VersionScoped, APIView):
    device_action = "promote a draft"

    @extend_schema(
        summary="Promote a draft: make it the current version",
        description=(
            "If another version became current since the draft was published, the draft is "
            "classified again against it and checked against the dataset's compatibility "
            "mode; a refusal (400) lists `breaking_columns` in `details`. Refused too for a "
            "version that is not a draft, or whose number is now below the current one."
        ),
        parameters=VERSION_PARAMETERS,
        request=PromoteInput,
        responses={200: VersionSerializer, **_ACTION_ERRORS},
    )
    def post(self, request, **kwargs):
        dataset = self.get_dataset()
        actor = self.steward_actor(dataset)
        data = _valid(PromoteInput, request.data)
        version = version_promote(
            version=self.get_version(), actor=actor, allow_breaking=data["allow_breaking"]
        )
        return self.version_response(version)


class VersionDeprecateView(StewardAction, VersionScoped, APIView):
    device_action = "deprecate a version"

    @extend_schema(
        summary="Deprecate a published version",
        description=(
            "Until `sunset`, every response about the version carries `Deprecation`, "
            "`Sunset`, a `Link` to it (rel=deprecation) and a `Warning` with the message; "
            "JSON about it holds `deprecation`. Deprecating again changes the message and "
            "date. Refused for the current version, a draft, an archived one, an empty "
            "message or a sunset in the past."
        ),
        parameters=VERSION_PARAMETERS,
        request=DeprecateInput,
        responses={200: VersionSerializer, **_ACTION_ERRORS},
    )
    def post(self, request, **kwargs):
        dataset = self.get_dataset()
        actor = self.steward_actor(dataset)
        data = _valid(DeprecateInput, request.data)
        version = version_deprecate(
            version=self.get_version(), message=data["message"], sunset=data["sunset"], actor=actor
        )
        return self.version_response(version)


class VersionArchiveView(StewardAction, VersionScoped, APIView):
    device_action = "archive a version"

    @extend_schema(
        summary="Archive a version",
        description=(
            "It stays stored and listed; only stewards may download it or read its rows. "
            "Refused for the current version and one already archived."
        ),
        parameters=VERSION_PARAMETERS,
        request=None,
        responses={200: VersionSerializer, **_ACTION_ERRORS},
    )
    def post(self, request, **kwargs):
        dataset = self.get_dataset()
        actor = self.steward_actor(dataset)
        return self.version_response(version_archive(version=self.get_version(), actor=actor))


class VersionRestoreView(StewardAction, VersionScoped, APIView):
    device_action = "restore a version"

    @extend_schema(
        summary="Restore an archived or deprecated version",
        description=(
            "An archived version goes back to what it was (draft, active or deprecated); "
            "a deprecated one becomes active, its message and sunset cleared."
        ),
        parameters=VERSION_PARAMETERS,
        request=None,
        responses={200: VersionSerializer, **_ACTION_ERRORS},
    )
    def post(self, request, **kwargs):
        dataset = self.get_dataset()
        actor = self.steward_actor(dataset)
        return self.version_response(version_restore(version=self.get_version(), actor=actor))
