"""The resumable upload API: large files go in parts straight to storage.

    POST   /datasets/<layer>/<name>/uploads/     begin (size, filename, sha256, options)
    POST   /uploads/<id>/part-urls/              URLs for parts (default: those missing)
    PUT    <part url>                            one part (S3, or the app when embedded)
    GET    /uploads/<id>/                        the upload and the parts that arrived
    POST   /uploads/<id>/complete/               check the parts; a worker joins them and
                                                 queues the publish job (202)
    DELETE /uploads/<id>/                        abort: the parts go

A web worker never holds the file: in the services mode the parts go to S3 through
presigned UploadPart URLs; in the embedded mode the app takes them itself
(`UploadPartView`, behind an HMAC-signed URL like its signed downloads, one part per
request). An upload begun with `"checksum": "crc32"` asks for each part's URL with the
part's CRC32 and PUTs it with the `headers` the answer lists (`x-amz-checksum-crc32`):
storage (or the app, embedded) refuses a part whose bytes have another CRC32.
Permissions are the publish endpoint's: the publish scope, the steward role, a device
token only for its dataset and only plain options. An upload another caller may not see
answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.access import visible_datasets
from catalog.api.errors import error_responses
from catalog.api.permissions import device_dataset_id
from catalog.audit import Actor
from catalog.exceptions import Forbidden, InvalidInput, NotFound
from catalog.models import TokenScope
from catalog.multipart import verify_part_signature
from catalog.selectors import user_can_steward
from catalog.storage import get_object_store
from versioning.api.serializers import (
    API_ROOT,
    PublishOptionsInput,
    _iso,
)
from versioning.api.views import DATASET_PARAMETERS, DatasetScoped, _device_limits
from versioning.models import JobSource, PartChecksum, ResumableUpload, UploadStatus
from versioning.options import PublishOptions
from versioning.services.resumable import (
    CRC32_HEADER,
    resumable_upload_abort,
    resumable_upload_complete,
    resumable_upload_create,
    resumable_upload_part_urls,
    resumable_upload_part_write,
    resumable_upload_parts,
)

PUBLISH = TokenScope.PUBLISH


# --- Serializers -----------------------------------------------------------------------


class UploadCreateInput(PublishOptionsInput):
    filename = serializers.CharField(
        max_length=300, help_text="The file's name; its extension tells CSV from Parquet."
    )
    size = serializers.IntegerField(help_text="The file's exact size in bytes.")
    checksum = serializers.ChoiceField(
        choices=[PartChecksum.CRC32],
        required=False,
        help_text="\"crc32\": each part's URL is asked for with the part's CRC32 and "
        "storage takes only those bytes (as boto3 sends parts); left out: parts go "
        "without a checksum.",
    )


class PartSerializer(serializers.Serializer):
    part_number = serializers.IntegerField()
    size = serializers.IntegerField()
    etag = serializers.CharField()
    crc32 = serializers.CharField(help_text="Its CRC32 (base64) when it was sent with one.")


class UploadSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    dataset = serializers.CharField()
    status = serializers.CharField(
        help_text="open, completing (parts checked, waiting for a worker), joining, "
        "completed (follow `job_url`), refused (see `error`), aborted, expired"
    )
    filename = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    checksum = serializers.CharField(help_text='"crc32" or "" (see begin).')
    part_size = serializers.IntegerField(help_text="Every part but the last has this size.")
    part_count = serializers.IntegerField()
    parts = PartSerializer(many=True, help_text="The parts storage holds now.")
    missing_parts = serializers.ListField(child=serializers.IntegerField())
    part_urls_url = serializers.CharField()
    complete_url = serializers.CharField()
    job_url = serializers.CharField(allow_null=True, help_text="Once completed.")
    error = serializers.DictField(
        allow_null=True,
        help_text="Why it was refused or sent back to open: `code`, `message`, `details` "
        "(e.g. `digest_mismatch` with both SHA-256s).",
    )
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()

    def to_representation(self, upload: ResumableUpload) -> dict:
        parts = self.context.get("parts", [])
        held = {part.number for part in parts}
        url = f"{API_ROOT}/uploads/{upload.pk}/"
        return {
            "id": str(upload.pk),
            "url": url,
            "dataset": upload.dataset.path,
            "status": upload.status,
            "filename": upload.filename,
            "size": upload.size,
            "sha256": upload.sha256,
            "checksum": upload.checksum,
            "part_size": upload.part_size,
            "part_count": upload.part_count,
            "parts": [
                {"part_number": p.number, "size": p.size, "etag": p.etag, "crc32": p.crc32}
                for p in parts
            ],
            "missing_parts": [n for n in range(1, upload.part_count + 1) if n not in held]
            if upload.status == UploadStatus.OPEN
            else [],
            "part_urls_url": f"{url}part-urls/",
            "complete_url": f"{url}complete/",
            "job_url": f"{API_ROOT}/publish-jobs/{upload.job_id}/"
            if upload.status == UploadStatus.COMPLETED
            else None,
            "error": {
                "code": upload.error_code,
                "message": upload.message,
                "details": upload.error_details,
            }
            if upload.error_code
            else None,
            "created_at": _iso(upload.created_at),
            "expires_at": _iso(upload.expires_at),
        }


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {
                "type": "object",
                "properties": {
                    "part_number": {"type": "integer", "minimum": 1},
                    "crc32": {"type": "string", "description": "The part's CRC32, base64."},
                },
                "required": ["part_number"],
                "additionalProperties": False,
            },
        ]
    }
)
class PartRequestField(serializers.Field):
    """A part asked for: its number, or `{"part_number": n, "crc32": "<base64>"}` (the
    CRC32 is checked by the service, against how the upload was begun)."""

    default_error_messages = {
        "invalid": 'A part is a number or {{"part_number": 1, "crc32": "<base64 CRC32>"}}.',
        "crc32": "crc32 must be text: the part's CRC32 in base64, as S3 writes it.",
    }

    def to_internal_value(self, data) -> tuple[int, str]:
        crc32 = ""
        if isinstance(data, dict):
            if set(data) - {"part_number", "crc32"} or "part_number" not in data:
                self.fail("invalid")
            data, crc32 = data["part_number"], data.get("crc32") or ""
            if not isinstance(crc32, str):
                self.fail("crc32")
        if isinstance(data, bool | dict | list):
            self.fail("invalid")
        return serializers.IntegerField().to_internal_value(data), crc32

    def to_representation(self, value):
        return value


class PartUrlsInput(serializers.Serializer):
    parts = serializers.ListField(
        child=PartRequestField(),
        required=False,
        max_length=10_000,
        help_text="Part numbers (from 1), default every part not yet received; for an "
        'upload begun with "checksum": "crc32", objects with each part\'s CRC32 instead: '
        '[{"part_number": 1, "crc32": "yZRlqg=="}].',
    )


class PartUrlSerializer(serializers.Serializer):
    part_number = serializers.IntegerField()
    size = serializers.IntegerField(help_text="The exact number of bytes to PUT.")
    method = serializers.CharField(help_text="Always PUT.")
    url = serializers.CharField()
    headers = serializers.DictField(
        child=serializers.CharField(),
        help_text="Headers the PUT must carry (`x-amz-checksum-crc32` for an upload with "
        "per-part checksums; the URL is signed with it), else empty.",
    )
    expires_at = serializers.DateTimeField()


class PartUrlsSerializer(serializers.Serializer):
    parts = PartUrlSerializer(many=True)


# --- Views -----------------------------------------------------------------------------


def upload_for_request(request, upload_id) -> ResumableUpload:
    """The upload as its caller may see it: begun by them, or in an organisation they
    steward (a device token: its dataset's only). 404 for anything else."""
    upload = (
        ResumableUpload.objects.select_related("dataset__organization")
        .filter(pk=upload_id, dataset__in=visible_datasets(request))
        .first()
    )
    if upload is None or not (
        upload.requested_by_id == request.user.pk
        or user_can_steward(request.user, upload.dataset.organization)
    ):
        raise NotFound(f"No upload {upload_id}.")
    return upload


def _upload_body(upload: ResumableUpload) -> dict:
    parts = resumable_upload_parts(upload=upload)
    return UploadSerializer(upload, context={"parts": parts}).data


class UploadCreateView(DatasetScoped, APIView):
    required_scopes = {"POST": PUBLISH}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Begin a resumable upload",
        description=(
            "For large files, or connections that break: give the file's `size`, "
            "`filename` and (recommended) `sha256`, with the options of a publish. Then "
            "ask for part URLs, PUT each part (in parallel if you like), and complete. "
            "After a break, GET the upload to see which parts arrived and send only the "
            "missing ones. Unfinished uploads are aborted after "
            "RESUMABLE_UPLOAD_EXPIRE_HOURS."
        ),
        parameters=DATASET_PARAMETERS,
        request=UploadCreateInput,
        responses={201: UploadSerializer, **error_responses(400, 401, 403, 404, 429, 503)},
    )
    def post(self, request, **kwargs):
        dataset = self.get_dataset()
        data = UploadCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        _device_limits(request, fields)
        upload = resumable_upload_create(
            dataset=dataset,
            actor=Actor.from_request(request, via="api"),
            source=JobSource.DEVICE if device_dataset_id(request) else JobSource.API,
            filename=fields["filename"],
            size=fields["size"],
            sha256=fields.get("sha256", ""),
            checksum=fields.get("checksum", PartChecksum.NONE),
            options=PublishOptions(
                version=fields.get("version", ""),
                note=fields.get("note", ""),
                allow_breaking=fields["allow_breaking"],
                draft=fields["draft"],
                inputs=fields.get("inputs", []),
            ),
        )
        body = UploadSerializer(upload, context={"parts": []}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


UPLOAD_PARAMETER = OpenApiParameter("upload_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class UploadDetailView(APIView):
    required_scopes = {"GET": PUBLISH, "DELETE": PUBLISH}

    @extend_schema(
        summary="A resumable upload and the parts that arrived",
        parameters=[UPLOAD_PARAMETER],
        responses={200: UploadSerializer, **error_responses(401, 403, 404, 429, 503)},
    )
    def get(self, request, upload_id):
        return Response(_upload_body(upload_for_request(request, upload_id)))

    @extend_schema(
        summary="Abort a resumable upload",
        description="Its parts are removed; an upload already completed cannot be aborted.",
        parameters=[UPLOAD_PARAMETER],
        responses={
            204: OpenApiResponse(description="Aborted."),
            **error_responses(401, 403, 404, 409, 429, 503),
        },
    )
    def delete(self, request, upload_id):
        upload = upload_for_request(request, upload_id)
        resumable_upload_abort(upload=upload, actor=Actor.from_request(request, via="api"))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadPartUrlsView(APIView):
    required_scopes = {"POST": PUBLISH}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="URLs to PUT parts of a resumable upload to",
        description=(
            "Each URL takes exactly one part of exactly `size` bytes with PUT, sent with "
            "the part's `headers`; the answer carries the part's `ETag`. In the services "
            "mode these are S3 presigned UploadPart URLs; in the embedded mode the app "
            'serves them. An upload begun with `"checksum": "crc32"` names each part '
            "with its CRC32 (400 without one, or with one on an upload begun without)."
        ),
        parameters=[UPLOAD_PARAMETER],
        request=PartUrlsInput,
        responses={200: PartUrlsSerializer, **error_responses(400, 401, 403, 404, 409, 429, 503)},
    )
    def post(self, request, upload_id):
        upload = upload_for_request(request, upload_id)
        data = PartUrlsInput(data=request.data)
        data.is_valid(raise_exception=True)
        asked = data.validated_data.get("parts")
        crc32 = {number: value for number, value in asked or () if value}
        urls = resumable_upload_part_urls(
            upload=upload,
            numbers=None if asked is None else [number for number, _ in asked],
            crc32=crc32 or None,
        )
        return Response(
            {
                "parts": [
                    {
                        "part_number": part.number,
                        "size": part.size,
                        "method": "PUT",
                        "url": part.url.url,
                        "headers": part.headers,
                        "expires_at": _iso(part.url.expires_at),
                    }
                    for part in urls
                ]
            }
        )


class UploadCompleteView(APIView):
    required_scopes = {"POST": PUBLISH}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Complete a resumable upload and publish it",
        description=(
            "Checks that every part arrived with its size (400 naming `missing_parts` or "
            "`wrong_size_parts`; the upload stays open) and answers 202 with the upload, "
            "now `completing`. A worker joins the parts, checks the `sha256` given at the "
            "start and queues the publish job: follow the upload's `url` until `status` "
            "is `completed` (then its `job_url`, as for a normal publish) or `refused` "
            "(`error.code` `digest_mismatch`: nothing was kept)."
        ),
        parameters=[UPLOAD_PARAMETER],
        request=None,
        responses={
            202: UploadSerializer,
            **error_responses(400, 401, 403, 404, 409, 429, 503),
        },
    )
    def post(self, request, upload_id):
        upload = upload_for_request(request, upload_id)
        upload = resumable_upload_complete(
            upload=upload, actor=Actor.from_request(request, via="api")
        )
        body = UploadSerializer(upload, context={"parts": []}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class UploadPartView(APIView):
    """One part, PUT to an app-served part URL (the embedded mode). The signature in the
    URL is the credential, as with S3's presigned URLs: no token, no session."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        summary="Send one part (embedded mode's part URLs)",
        description=(
            "Reached through a URL from `part-urls`, never built by hand. The body is the "
            "part's bytes, exactly its size (and, when the URL names a `crc32`, of that "
            "CRC32: 400 `digest_mismatch` otherwise). In the services mode parts go to S3 "
            "instead."
        ),
        parameters=[
            OpenApiParameter("storage_upload_id", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter("part_number", OpenApiTypes.INT, OpenApiParameter.PATH),
            OpenApiParameter("length", OpenApiTypes.INT, required=True),
            OpenApiParameter("expires", OpenApiTypes.INT, required=True),
            OpenApiParameter("crc32", OpenApiTypes.STR),
            OpenApiParameter("signature", OpenApiTypes.STR, required=True),
        ],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: PartSerializer, **error_responses(400, 403, 404, 409, 503)},
        auth=[],
    )
    def put(self, request, storage_upload_id: str, part_number: int):
        query = request.query_params
        upload = ResumableUpload.objects.filter(storage_upload_id=storage_upload_id).first()
        try:
            length = int(query.get("length", ""))
        except ValueError:
            length = -1
        crc32 = query.get("crc32", "")
        if upload is None or not verify_part_signature(
            upload.staging_key,
            storage_upload_id,
            part_number,
            length,
            query.get("expires", ""),
            query.get("signature", ""),
            crc32,
        ):
            raise Forbidden(
                "This part URL's signature is wrong or has expired: ask for new part URLs."
            )
        sent_crc32 = request.headers.get(CRC32_HEADER)
        if sent_crc32 is not None and sent_crc32 != crc32:
            # S3 refuses a checksum header its URL was not signed with; so does this.
            raise Forbidden(
                f"This part URL takes the {CRC32_HEADER} it was asked for "
                f"({crc32 or 'none'}), not {sent_crc32[:40]!r}: ask for a new URL with "
                "the part's CRC32.",
                details={"header": CRC32_HEADER},
            )
        if not hasattr(get_object_store(), "multipart_part_write"):
            raise NotFound("Parts go to the storage's own URLs here.")
        try:
            sent = int(request.META.get("CONTENT_LENGTH") or "")
        except ValueError:
            raise InvalidInput(
                "Send the part with a Content-Length header.", details={"field": "Content-Length"}
            ) from None
        part = resumable_upload_part_write(
            upload=upload, number=part_number, stream=request._request, length=sent, crc32=crc32
        )
        headers = {"ETag": part.etag} | ({CRC32_HEADER: part.crc32} if crc32 else {})
        return Response(
            {"part_number": part.number, "size": part.size, "etag": part.etag, "crc32": part.crc32},
            headers=headers,
        )
