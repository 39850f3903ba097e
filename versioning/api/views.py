"""The datasets API: the catalog, versions, publishing, the manifest, signed URLs, rows.

Every view is thin: it checks its query or body with an input serializer, finds the
dataset through `dataset_for_request` (404 for what the caller may not see), calls a
service or selector, and answers through an output serializer. Writes go through the
services (`dataset_create`, `dataset_update`, `publish_job_create...`), which check the
steward role and write the audit log.
"""

from __future__ import annotations

import pyarrow as pa
from django.conf import settings
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from catalog import hooks
from catalog.api.access import dataset_for_request, visible_datasets
from catalog.api.errors import error_responses
from catalog.api.exceptions import PayloadTooLarge
from catalog.api.generations import (
    ANSWER_SECONDS,
    cached_read,
    cached_write,
    model_restore,
    model_snapshot,
)
from catalog.api.lean import LeanTokenRead, json_response
from catalog.api.permissions import device_dataset_id, device_refuse
from catalog.api.throttling import SignedUrlRateThrottle
from catalog.audit import Actor
from catalog.digests import CheckedStream, content_digest_sha256
from catalog.exceptions import Forbidden, InvalidInput, NotFound, StorageUnavailable
from catalog.models import Dataset, TokenScope
from catalog.selectors import organizations_stewarded_by, user_can_steward
from catalog.services import dataset_create, dataset_update
from catalog.storage import get_object_store
from catalog.usage_hooks import usage_note
from versioning import columnar
from versioning.api import caching
from versioning.api.deprecation import deprecation_headers
from versioning.api.filters import DatasetFilterSet, VersionFilterSet
from versioning.api.serializers import (
    DatasetCreateInput,
    DatasetDetailSerializer,
    DatasetSerializer,
    DatasetUpdateInput,
    ManifestSerializer,
    PublishFromObjectInput,
    PublishJobQuery,
    PublishJobSerializer,
    PublishOptionsInput,
    PublishUploadInput,
    RowsSerializer,
    SignedUrlSerializer,
    VersionSerializer,
)
from versioning.api.uploads import MultipartUpload
from versioning.manifest import isoformat_z
from versioning.models import DatasetVersion, JobSource, PublishJob, VersionStatus
from versioning.selectors import manifest_for_user
from versioning.semver import parse_version
from versioning.services import (
    publish_job_create,
    publish_job_create_from_object,
    version_download_check,
)
from versioning.services.jobs import publish_job_wait

READ = {"GET": TokenScope.READ}
ORG_PARAMETER = OpenApiParameter(
    "org", OpenApiTypes.STR, OpenApiParameter.PATH, description="Organisation slug."
)
DATASET_PARAMETERS = [
    OpenApiParameter(
        "layer",
        OpenApiTypes.STR,
        OpenApiParameter.PATH,
        enum=["bronze", "silver", "gold", "platinum"],
    ),
    OpenApiParameter(
        "name", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$"
    ),
]


def _current_published_at():
    return Subquery(
        DatasetVersion.objects.filter(dataset=OuterRef("pk"), is_current=True).values(
            "published_at"
        )[:1]
    )


def _current_prefetch(*, schema: bool) -> Prefetch:
    versions = DatasetVersion.objects.filter(is_current=True)
    if not schema:
        versions = versions.defer("schema")
    return Prefetch("versions", queryset=versions, to_attr="current_versions")


def _may_see_drafts(request, dataset: Dataset) -> bool:
    return request.user.is_authenticated and user_can_steward(request.user, dataset.organization)


def _version_of(request, dataset: Dataset, version: str | None) -> DatasetVersion:
    """The named version (current when None) as the caller may see it."""
    versions = DatasetVersion.objects.filter(dataset=dataset)
    if version:
        found = versions.filter(version=version).first()
        if found is None or (
            found.status == VersionStatus.DRAFT and not _may_see_drafts(request, dataset)
        ):
            raise NotFound(f"{dataset.path} has no version {version!r}.")
        return found
    found = versions.filter(is_current=True).first()
    if found is None:
        raise NotFound(f"Nothing of {dataset.path} has been published yet.")
    return found


class DatasetScoped:
    """Views under `/datasets/<layer>/<name>/` (and `/orgs/<org>/datasets/...`)."""

    anonymous_read = True

    def get_dataset(self) -> Dataset:
        if not hasattr(self, "_dataset"):
            self._dataset = dataset_for_request(
                self.request,
                layer=self.kwargs["layer"],
                name=self.kwargs["name"],
                org=self.kwargs.get("org"),
            )
        return self._dataset


# --- Datasets --------------------------------------------------------------------------


class DatasetListView(generics.ListAPIView):
    """Datasets the caller may see: public ones for anyone, internal ones for anyone
    signed in, private ones for members of their organisation."""

    anonymous_read = True
    required_scopes = {"GET": TokenScope.READ, "POST": TokenScope.ADMIN}
    serializer_class = DatasetSerializer
    filterset_class = DatasetFilterSet
    parser_classes = [JSONParser]

    def get_queryset(self):
        return (
            visible_datasets(self.request)
            .annotate(last_published_at=_current_published_at())
            .prefetch_related(_current_prefetch(schema=False))
        )

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    def list(self, request, *args, **kwargs):
        # The same bytes again until the catalog changes or a dataset on the page
        # becomes stale. The `stale` filter's answer moves with the clock alone, so it
        # is always worked out afresh.
        key = None if "stale" in request.query_params else caching.list_key(request)
        if key is None:
            return super().list(request, *args, **kwargs)
        body, generation = cached_read(key, request)
        if body is None:
            now = timezone.now()
            response = super().list(request, *args, **kwargs)
            body = JSONRenderer().render(response.data)
            seconds = caching.seconds_until_stale_changes(response.data["results"], now)
            if seconds >= 1:
                cached_write(key, body, generation=generation, seconds=int(seconds))
        return HttpResponse(body, content_type="application/json")

    @extend_schema(
        summary="List and search datasets",
        responses={200: DatasetSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register a dataset",
        description="Stewards only. The address `<layer>/<name>` cannot change later.",
        request=DatasetCreateInput,
        responses={201: DatasetDetailSerializer, **error_responses(400, 401, 403, 429)},
    )
    def post(self, request):
        if not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        data = DatasetCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        organization = self._organization(fields.pop("organization", None))
        dataset = dataset_create(
            organization=organization,
            layer=fields.pop("layer"),
            name=fields.pop("name"),
            actor=Actor.from_request(request, via="api"),
            **fields,
        )
        body = DatasetDetailSerializer(dataset, context={"now": timezone.now()}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def _organization(self, slug: str | None):
        stewarded = list(organizations_stewarded_by(self.request.user))
        if slug is not None:
            for organization in stewarded:
                if organization.slug == slug:
                    return organization
            raise InvalidInput(
                f"You steward no organisation {slug!r}.", details={"field": "organization"}
            )
        if not stewarded:
            raise Forbidden("You are not a steward of any organisation.")
        if len(stewarded) > 1:
            raise InvalidInput(
                "You steward several organisations: name one in 'organization'.",
                details={"organizations": [o.slug for o in stewarded]},
            )
        return stewarded[0]


class DatasetDetailView(DatasetScoped, APIView):
    required_scopes = {"GET": TokenScope.READ, "PATCH": TokenScope.ADMIN}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="A dataset with its current version's facts and schema",
        parameters=DATASET_PARAMETERS,
        responses={200: DatasetDetailSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, **kwargs):
        dataset = self.get_dataset()
        return Response(DatasetDetailSerializer(dataset, context={"now": timezone.now()}).data)

    @extend_schema(
        summary="Change a dataset's description, tags, visibility or freshness",
        parameters=DATASET_PARAMETERS,
        request=DatasetUpdateInput,
        responses={200: DatasetDetailSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def patch(self, request, **kwargs):
        dataset = self.get_dataset()
        data = DatasetUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        dataset = dataset_update(
            dataset=dataset, actor=Actor.from_request(request, via="api"), **data.validated_data
        )
        return Response(DatasetDetailSerializer(dataset, context={"now": timezone.now()}).data)


# --- Versions and publishing -----------------------------------------------------------


def _device_limits(request, options: dict) -> None:
    """A device token uploads a new file, with a version and a note at most."""
    if options["allow_breaking"]:
        device_refuse(request, "allow a breaking change")
    version = (options.get("version") or "").strip()
    if options["draft"] or (version and parse_version(version).prerelease):
        device_refuse(request, "publish a draft or pre-release")
    if options.get("inputs"):
        device_refuse(request, "name the inputs a version was built from")


class VersionListView(DatasetScoped, generics.ListAPIView):
    required_scopes = {"GET": TokenScope.READ, "POST": TokenScope.PUBLISH}
    serializer_class = VersionSerializer
    filterset_class = VersionFilterSet
    parser_classes = [JSONParser, MultiPartParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DatasetVersion.objects.none()
        dataset = self.get_dataset()
        versions = DatasetVersion.objects.filter(dataset=dataset).select_related(
            "parent", "published_by"
        )
        if not _may_see_drafts(self.request, dataset):
            versions = versions.exclude(status=VersionStatus.DRAFT)
        return versions.order_by("-published_at", "-id")

    def get_serializer_context(self):
        if getattr(self, "swagger_fake_view", False):
            return super().get_serializer_context()
        return {**super().get_serializer_context(), "dataset": self.get_dataset()}

    @extend_schema(
        summary="Versions of a dataset, newest first",
        parameters=DATASET_PARAMETERS,
        responses={200: VersionSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Publish a new version",
        description=(
            "Either a multipart upload (fields `version` and `note` first, then `file`), "
            "streamed to staging as it arrives, or JSON naming an object already in the "
            "bucket under the organisation's prefix. Answers 202 with the publish job; "
            "follow its `url` until `status` is `succeeded` or `failed` (a small upload "
            "is published by the request itself, so its job is usually finished "
            "already). Needs the "
            "steward role and the publish scope; a device token only uploads new files "
            "to its own dataset. A body cut off before its end is refused (400); so is "
            "a file whose SHA-256 is not the `sha256` sent, or a body whose digest is not "
            "the `Content-Digest` sent (400 `digest_mismatch`)."
        ),
        parameters=[
            *DATASET_PARAMETERS,
            OpenApiParameter(
                "Content-Digest",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="RFC 9530, `sha-256=:<base64>:`: the SHA-256 of the request "
                "body as sent (for multipart, the whole body).",
            ),
        ],
        request={
            "multipart/form-data": PublishUploadInput,
            "application/json": PublishFromObjectInput,
        },
        responses={
            202: PublishJobSerializer,
            **error_responses(400, 401, 403, 404, 413, 415, 429, 503),
        },
    )
    def post(self, request, **kwargs):
        if not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        dataset = self.get_dataset()
        limit = settings.MAX_UPLOAD_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("Malformed Content-Length.") from None
        if length > limit:
            raise PayloadTooLarge(f"The upload is larger than the limit of {limit:,} bytes.")
        actor = Actor.from_request(request, via="api")
        source = JobSource.DEVICE if device_dataset_id(request) else JobSource.API
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            job = self._publish_upload(request, dataset, actor, source, limit, length)
        elif content_type == "application/json":
            device_refuse(request, "publish an object already in the bucket")
            data = PublishFromObjectInput(data=request.data)
            data.is_valid(raise_exception=True)
            job = publish_job_create_from_object(
                dataset=dataset,
                source_key=data.validated_data["object_key"],
                expected_sha256=data.validated_data.get("sha256", ""),
                actor=actor,
                requested_version=data.validated_data.get("version", ""),
                note=data.validated_data.get("note", ""),
                allow_breaking=data.validated_data["allow_breaking"],
                inputs=data.validated_data.get("inputs", []),
                draft=data.validated_data["draft"],
            )
        else:
            raise exceptions.UnsupportedMediaType(
                request.content_type,
                detail="Send multipart/form-data with a file, or application/json naming "
                "an object in the bucket.",
            )
        job = PublishJob.objects.select_related("dataset__organization", "version").get(pk=job.pk)
        body = PublishJobSerializer(job).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    def _publish_upload(self, request, dataset, actor, source, limit, length) -> PublishJob:
        http_request = request._request
        if not user_can_steward(request.user, dataset.organization):
            # Refused before a byte of the file is read.
            raise Forbidden(f"You are not a steward of the organisation {dataset.organization}.")
        content_digest = content_digest_sha256(request.headers.get("Content-Digest", ""))
        if hasattr(http_request, "_files"):
            # Already parsed (a session's CSRF check reads the form): Django spooled the
            # file to disk, so stream it from there.
            if content_digest is not None:
                raise InvalidInput(
                    "Content-Digest is checked only on uploads sent with a token; send the "
                    "file's SHA-256 in the sha256 field instead."
                )
            upload = http_request.FILES.get("file")
            if upload is None:
                raise InvalidInput("The upload has no file part named 'file'.")
            fields, stream, filename = http_request.POST, upload, upload.name
        else:
            multipart = MultipartUpload(
                body=http_request,
                content_type=request.content_type,
                limit=limit,
                content_length=length if request.META.get("CONTENT_LENGTH") else None,
                content_digest=content_digest,
            )
            fields, filename, stream = multipart.fields_and_file()
        options = PublishOptionsInput(data=fields)
        options.is_valid(raise_exception=True)
        _device_limits(request, options.validated_data)
        if options.validated_data.get("sha256"):
            stream = CheckedStream(stream, expected=options.validated_data["sha256"])
        return publish_job_create(
            dataset=dataset,
            stream=stream,
            filename=filename,
            actor=actor,
            source=source,
            requested_version=options.validated_data.get("version", ""),
            note=options.validated_data.get("note", ""),
            allow_breaking=options.validated_data["allow_breaking"],
            inputs=options.validated_data.get("inputs", []),
            draft=options.validated_data["draft"],
            publish_now=True,
        )


class VersionDetailView(DatasetScoped, APIView):
    required_scopes = READ

    @extend_schema(
        summary="One version of a dataset",
        parameters=DATASET_PARAMETERS,
        responses={200: VersionSerializer, **error_responses(401, 403, 404, 429)},
    )
    def get(self, request, **kwargs):
        dataset = self.get_dataset()
        version = _version_of(request, dataset, kwargs["version"])
        return Response(
            VersionSerializer(version, context={"dataset": dataset}).data,
            headers=deprecation_headers(version),
        )


class PublishJobView(APIView):
    required_scopes = {"GET": TokenScope.PUBLISH}

    @extend_schema(
        summary="Follow a publish job",
        description=(
            "With `?wait=N` the answer is held until the job is finished (at most N "
            "seconds), so a client learns the outcome as soon as there is one without "
            "asking again and again."
        ),
        parameters=[PublishJobQuery],
        responses={200: PublishJobSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, job_id):
        query = PublishJobQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        jobs = PublishJob.objects.select_related("dataset__organization", "version").filter(
            pk=job_id, dataset__in=visible_datasets(request)
        )
        job = jobs.first()
        if job is None or not (
            job.requested_by_id == request.user.pk
            or user_can_steward(request.user, job.dataset.organization)
        ):
            raise NotFound(f"No publish job {job_id}.")
        wait = query.validated_data["wait"]
        if wait and not job.is_finished and publish_job_wait(job_id=job.pk, seconds=wait):
            job = jobs.first() or job
        return Response(PublishJobSerializer(job).data)


# --- Manifest --------------------------------------------------------------------------


def _etag_matches(header: str, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x".
    if header == etag:  # a client sending back the ETag it was given
        return True
    tags = parse_etags(header)
    return "*" in tags or etag in {tag.removeprefix("W/") for tag in tags}


class ManifestView(LeanTokenRead, APIView):
    """The manifest (seed 001's `latest.json`) of the caller's organisation(s)."""

    required_scopes = READ

    @extend_schema(
        summary="The manifest of your organisation(s)",
        description=(
            "Exactly the stored `latest.json` for a member of one organisation (or with "
            "`?org=`); for several, one manifest of the same shape listing all of them, "
            "where a `<layer>/<name>` found in two is keyed `<org>/<layer>/<name>`. Send "
            "the `ETag` back as `If-None-Match` to get 304 while nothing changed."
        ),
        parameters=[
            OpenApiParameter("org", OpenApiTypes.STR, description="Only this organisation."),
            OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={
            200: ManifestSerializer,
            304: OpenApiResponse(description="Not modified since the ETag sent."),
            **error_responses(400, 401, 403, 404, 429),
        },
    )
    def get(self, request):
        slug = request.GET.get("org")
        if slug is not None:
            slug = slug[:64].replace("\x00", "")
        # The ETag and body, kept until the catalog changes: a client polling with
        # If-None-Match costs no query.
        key = caching.manifest_key(request, slug=slug)
        cached, generation = (None, 0) if key is None else cached_read(key, request)
        if cached is None:
            cached = manifest_for_user(user=request.user, slug=slug)
            if key is not None:
                cached_write(key, cached, generation=generation, seconds=ANSWER_SECONDS)
        etag, body = cached
        if _etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            return self._answer(HttpResponse(status=304), etag)
        return self._answer(HttpResponse(body, content_type="application/json"), etag)

    def _answer(self, response: HttpResponse, etag: str) -> HttpResponse:
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response


# --- Signed URLs -----------------------------------------------------------------------


class SignedUrlQuery(serializers.Serializer):
    ttl = serializers.IntegerField(
        min_value=settings.SIGNED_URL_MIN_TTL,
        max_value=settings.SIGNED_URL_MAX_TTL,
        default=settings.SIGNED_URL_DEFAULT_TTL,
        help_text="Seconds the URL works, 60 to 604800 (7 days); default 3600.",
    )
    version = serializers.CharField(
        required=False, max_length=64, help_text="A version; default: the current one."
    )
    region = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Sign on this region's copy when it is verified there, else the primary's.",
    )


class ProxyQuery(SignedUrlQuery):
    dataset = serializers.RegexField(
        r"^[a-z]{1,16}/[a-z0-9][a-z0-9_-]{0,63}$", help_text="`<layer>/<name>`"
    )
    org = serializers.SlugField(required=False, max_length=64)


def _dataset_and_version(
    request,
    *,
    layer: str,
    name: str,
    org: str | None,
    version: str | None,
    rows: bool = False,
) -> tuple[Dataset, DatasetVersion]:
    """The dataset a request names and its version (current when None), as the caller
    may see and download them (404, 401 and 403 as `dataset_for_request`, `_version_of`
    and `version_download_check` answer).

    Kept in the shared cache until the catalog changes: a published version's facts
    never change, and which version is current, its status and who may see the dataset
    all move the catalog's generation. Drafts and archived versions are never cached:
    who may download them depends on the caller's role. The columnar copy is recorded
    on a version after its publish (without an event), so for `rows` a version cached
    before it asks the database for it again until it is there.
    """
    key = caching.version_key(request, layer=layer, name=name, org=org, version=version)
    found, generation = (None, 0) if key is None else cached_read(key, request)
    if found is not None:
        dataset, current = (model_restore(snapshot) for snapshot in found)
        found = None if dataset is None or current is None else (dataset, current)
    if found is not None:
        current.dataset = dataset
        if columnar.rows_ready(current) or not rows:
            usage_note(request, dataset=dataset, version=current)
            return found
        current.columnar_key = (
            DatasetVersion.objects.filter(pk=current.pk)
            .values_list("columnar_key", flat=True)
            .first()
            or ""
        )
    else:
        dataset = dataset_for_request(request, layer=layer, name=name, org=org)
        current = _version_of(request, dataset, version)
        version_download_check(version=current, user=request.user)
        current.dataset = dataset
    if key is not None and current.status not in (VersionStatus.DRAFT, VersionStatus.ARCHIVED):
        snapshot = (model_snapshot(dataset, "organization"), model_snapshot(current))
        cached_write(key, snapshot, generation=generation, seconds=ANSWER_SECONDS)
    usage_note(request, dataset=dataset, version=current)
    return dataset, current


def signed_download(
    request,
    *,
    layer: str,
    name: str,
    org: str | None,
    ttl: int,
    version: str | None,
    region: str = "",
) -> tuple[dict, dict[str, str]]:
    """The signed URL's body, and the headers its response needs (a deprecated version's)."""
    _, found = _dataset_and_version(request, layer=layer, name=name, org=org, version=version)
    # A registered locator (replication) may point at a region's verified copy.
    location = hooks.download_locate(version=found, region=region)
    store = location.store if location else get_object_store()
    signed = store.signed_url(
        found.key, ttl=ttl, filename=found.key.rsplit("/", 1)[-1], version=found.version
    )
    body = {
        "signed_url": signed.url,
        "expires_at": isoformat_z(signed.expires_at),
        "dataset_info": {
            "row_count": found.row_count,
            "size_bytes": found.size_bytes,
            "last_updated": isoformat_z(found.published_at),
            "sha256": found.sha256,
            "version": found.version,
        },
    }
    if location:
        body["dataset_info"]["region"] = location.region
        if location.cdn_url:
            body["cdn_url"] = location.cdn_url
    return body, {"Cache-Control": "no-store", **deprecation_headers(found)}


def signed_url_params(params) -> dict:
    """`?ttl=&version=&region=` as `SignedUrlQuery` validates them. The common forms (no
    parameter, or a plain number of seconds in range) are read directly; anything else
    goes through the serializer, which words every refusal."""
    if not params:
        return {"ttl": settings.SIGNED_URL_DEFAULT_TTL}
    if params.keys() == {"ttl"}:
        raw = params["ttl"]
        if raw.isascii() and raw.isdigit() and len(raw) < 10:
            ttl = int(raw)
            if settings.SIGNED_URL_MIN_TTL <= ttl <= settings.SIGNED_URL_MAX_TTL:
                return {"ttl": ttl}
    query = SignedUrlQuery(data=params)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _signed_download_in_url(request, kwargs) -> tuple[dict, dict[str, str]]:
    """`signed_download` for the dataset the URL names, with `?ttl=&version=`."""
    params = signed_url_params(request.GET)
    return signed_download(
        request,
        layer=kwargs["layer"],
        name=kwargs["name"],
        org=kwargs.get("org"),
        ttl=params["ttl"],
        version=params.get("version"),
        region=params.get("region", ""),
    )


_SIGNED_URL_ERRORS = error_responses(400, 401, 403, 404, 429, 503)


class DownloadView(LeanTokenRead, DatasetScoped, APIView):
    required_scopes = READ
    throttle_classes = [SignedUrlRateThrottle]

    @extend_schema(
        summary="A signed download URL",
        description="Rate-limited per user (default 10 a minute).",
        parameters=[*DATASET_PARAMETERS, SignedUrlQuery],
        responses={200: SignedUrlSerializer, **_SIGNED_URL_ERRORS},
    )
    def get(self, request, **kwargs):
        body, headers = _signed_download_in_url(request, kwargs)
        return json_response(body, headers=headers)


class DatasetProxyView(APIView):
    """Seed 001's `dataset-proxy?dataset=gold/txn_daily&ttl=3600`, for clients written
    against it."""

    anonymous_read = True
    required_scopes = READ
    throttle_classes = [SignedUrlRateThrottle]

    @extend_schema(
        summary="A signed download URL (seed 001's form)",
        parameters=[ProxyQuery],
        responses={200: SignedUrlSerializer, **_SIGNED_URL_ERRORS},
    )
    def get(self, request):
        query = ProxyQuery(data=request.query_params)
        if not query.is_valid():
            if "dataset" in query.errors and "dataset" in request.query_params:
                # A malformed name is a name nobody has: the same 404 as for a hidden one.
                raise NotFound(f"No dataset {request.query_params['dataset'][:200]!r}.")
            raise exceptions.ValidationError(query.errors)
        fields = query.validated_data
        layer, name = fields["dataset"].split("/")
        body, headers = signed_download(
            request,
            layer=layer,
            name=name,
            org=fields.get("org"),
            ttl=fields["ttl"],
            version=fields.get("version"),
            region=fields.get("region", ""),
        )
        return Response(body, headers=headers)


@extend_schema(exclude=True)
class DatasetProxySlashView(DatasetProxyView):
    """The same, with a trailing slash; documented once, above."""


class RawView(DatasetScoped, APIView):
    required_scopes = READ
    throttle_classes = [SignedUrlRateThrottle]

    @extend_schema(
        summary="Redirect to the file (a signed URL)",
        parameters=[*DATASET_PARAMETERS, SignedUrlQuery],
        responses={
            302: OpenApiResponse(description="`Location` is a signed URL of the file."),
            **_SIGNED_URL_ERRORS,
        },
    )
    def get(self, request, **kwargs):
        body, headers = _signed_download_in_url(request, kwargs)
        return HttpResponseRedirect(body["signed_url"], headers=headers)


# --- Rows ------------------------------------------------------------------------------

MAX_ROWS = 10_000
# Shared by the serializer and the direct reading of its common forms (`rows_params`).
_ROWS_DEFAULT_LIMIT = 1000
_ROWS_FORMATS = ("json", "csv", "ndjson")
_ROWS_DEFAULT_FORMAT = "json"
_COLUMNS_MAX_LENGTH = 20000
_VERSION_MAX_LENGTH = 64


class RowsQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_ROWS, default=_ROWS_DEFAULT_LIMIT)
    offset = serializers.IntegerField(min_value=0, max_value=2**62, default=0)
    columns = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=_COLUMNS_MAX_LENGTH,
        help_text="Comma-separated column names; default all.",
    )
    format = serializers.ChoiceField(choices=_ROWS_FORMATS, default=_ROWS_DEFAULT_FORMAT)
    version = serializers.CharField(required=False, max_length=_VERSION_MAX_LENGTH)


def rows_params(params) -> dict:
    """`?limit=&offset=&columns=&format=&version=` as `RowsQuery` validates them. The
    common forms (plain numbers in range, printable ASCII text within its length, a
    known format) are read directly; anything else goes through the serializer, which
    words every refusal."""
    given = {name: params[name] for name in params}
    if given.keys() <= {"limit", "offset", "columns", "format", "version"} and all(
        value.isascii() and value.isprintable() for value in given.values()
    ):
        limit = given.get("limit", str(_ROWS_DEFAULT_LIMIT))
        offset = given.get("offset", "0")
        columns, version = given.get("columns", "").strip(), given.get("version", "").strip()
        if (
            limit.isdigit()
            and offset.isdigit()
            and len(limit) < 6
            and len(offset) < 19
            and 1 <= int(limit) <= MAX_ROWS
            and given.get("format", _ROWS_DEFAULT_FORMAT) in _ROWS_FORMATS
            and len(columns) <= _COLUMNS_MAX_LENGTH
            and (0 < len(version) <= _VERSION_MAX_LENGTH or "version" not in given)
        ):
            found = {
                "limit": int(limit),
                "offset": int(offset),
                "format": given.get("format", _ROWS_DEFAULT_FORMAT),
            }
            if "columns" in given:
                found["columns"] = columns
            if version:
                found["version"] = version
            return found
    query = RowsQuery(data=params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class RowsView(LeanTokenRead, DatasetScoped, APIView):
    required_scopes = READ

    @extend_schema(
        summary="Rows of a version, with column selection",
        description=(
            "Reads only the requested rows and columns. `format=csv` and `format=ndjson` "
            "answer those media types, with the total in `X-Total-Count`."
        ),
        parameters=[*DATASET_PARAMETERS, RowsQuery],
        responses={
            (200, "application/json"): RowsSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            **_SIGNED_URL_ERRORS,
        },
    )
    def get(self, request, **kwargs):
        params = rows_params(request.GET)
        dataset, version = _dataset_and_version(
            request,
            layer=kwargs["layer"],
            name=kwargs["name"],
            org=kwargs.get("org"),
            version=params.get("version"),
            rows=True,
        )
        valid = [column["name"] for column in version.schema]
        columns = self._columns(params.get("columns", ""), valid)
        offset, limit = params["offset"], params["limit"]
        if offset > version.row_count:
            raise InvalidInput(
                f"offset {offset} is past the last row: {dataset.path} {version.version} has "
                f"{version.row_count} rows.",
                details={"offset": offset, "row_count": version.row_count},
            )
        try:
            table = columnar.rows_read(version=version, columns=columns, offset=offset, limit=limit)
        except (pa.ArrowException, OSError) as exc:
            raise StorageUnavailable(f"The rows of {dataset.path} could not be read.") from exc
        headers = {"X-Total-Count": str(version.row_count), **deprecation_headers(version)}
        if params["format"] == "csv":
            return HttpResponse(
                columnar.encode_csv(table), content_type="text/csv; charset=utf-8", headers=headers
            )
        if params["format"] == "ndjson":
            return HttpResponse(
                columnar.encode_ndjson(table), content_type="application/x-ndjson", headers=headers
            )
        url = request.build_absolute_uri()
        end = offset + table.num_rows
        body = {
            "count": version.row_count,
            "next": replace_query_param(url, "offset", end) if end < version.row_count else None,
            "previous": (
                None
                if offset == 0
                else replace_query_param(url, "offset", max(0, offset - limit))
                if offset - limit > 0
                else remove_query_param(url, "offset")
            ),
            "version": version.version,
            "columns": columns,
            "results": columnar.rows_as_dicts(table),
        }
        return HttpResponse(
            columnar.encode_json(body), content_type="application/json", headers=headers
        )

    def _columns(self, raw: str, valid: list[str]) -> list[str]:
        if not raw.strip():
            return valid
        asked = list(dict.fromkeys(c.strip() for c in raw.split(",") if c.strip()))
        unknown = [c for c in asked if c not in valid]
        if unknown:
            raise InvalidInput(
                f"Unknown column(s) {', '.join(map(repr, unknown))}; the columns are "
                f"{', '.join(valid)}.",
                details={"unknown": unknown, "valid_columns": valid},
            )
        return asked
