"""One error shape for every 4xx and 5xx of the API:

    {"error": {"code": "not_found", "message": "No dataset 'gold/x'.", "details": {}}}

`exception_handler` is DRF's hook: it turns DRF's own exceptions, Django's Http404 and
PermissionDenied, our domain errors (`catalog.exceptions`) and anything unexpected into
that shape, so no input ever produces Django's HTML error page. `api_not_found` and
`api_server_error` do the same for what happens outside a DRF view (an unknown URL
under /api/).
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DataError
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import set_rollback

from catalog.api.exceptions import AccountLocked, PayloadTooLarge  # noqa: F401
from catalog.exceptions import (
    Conflict,
    DomainError,
    FileRejected,
    Forbidden,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)

_DOMAIN_STATUS = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    StorageUnavailable: 503,
    FileRejected: 400,
    InvalidInput: 400,
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _flatten(detail) -> str:
    """A one-line summary of a DRF validation detail, for `message`."""
    if isinstance(detail, dict):
        parts = []
        for field, value in detail.items():
            text = _flatten(value)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


def _domain_status(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in _DOMAIN_STATUS:
            return _DOMAIN_STATUS[cls]
    return 400


def exception_handler(exc, context):
    headers: dict[str, str] = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if exc.args else "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) if exc.args else None)
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc) or "The request was malformed.")
    elif isinstance(exc, DataError):
        # The database refused a value the validation let through (out of its range).
        logger.warning("Database refused an API input: %s", exc)
        exc = exceptions.ValidationError({"detail": "A value is out of the accepted range."})

    if isinstance(exc, DomainError):
        code, message, details = exc.code, exc.message, exc.details
        status_code = _domain_status(exc)
        if isinstance(exc, StorageUnavailable):
            headers["Retry-After"] = "5"
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = f"{max(1, int(exc.wait + 0.999))}"
        if isinstance(exc, exceptions.ValidationError):
            code = "invalid"
            details = exc.detail if isinstance(exc.detail, dict) else {"errors": exc.detail}
            message = _flatten(exc.detail) or "The request is invalid."
        else:
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else exc.default_code
            message = _flatten(exc.detail)
            details = {}
        if isinstance(exc, exceptions.Throttled):
            code = "throttled"
            message = "Too many requests; slow down."
            details = {"retry_after": int(headers.get("Retry-After", "1"))}
    else:
        logger.error("Unhandled error in the API", exc_info=exc)
        status_code = 500
        code, message, details = (
            "internal",
            "Something went wrong on our side; it has been logged.",
            {},
        )
    set_rollback()
    return Response(error_body(code, message, details), status=status_code, headers=headers)


def _json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def api_not_found(request, exception=None):
    return _json_error(404, "not_found", "There is nothing at this address.")


def api_server_error(request):
    return _json_error(500, "internal", "Something went wrong on our side; it has been logged.")


def api_bad_request(request, exception=None):
    return _json_error(400, "bad_request", "The request was malformed.")


def api_permission_denied(request, exception=None):
    return _json_error(403, "forbidden", "You may not do this.")


# --- OpenAPI ------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for machines: not_found, invalid, ...")
    message = serializers.CharField(help_text="For people: what went wrong and what to do.")
    details = serializers.DictField(help_text="Field errors, valid values, limits.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_TEXT = {
    400: "Invalid input: the message says which parameter and why.",
    401: "No credentials, or a malformed, unknown, expired or revoked token.",
    403: "Signed in, but the token lacks the scope or the user the role.",
    404: "No such object, or one the caller may not see (never 403, so nothing leaks).",
    405: "Method not allowed.",
    409: "Conflicts with the current state.",
    413: "The upload is larger than MAX_UPLOAD_BYTES.",
    415: "Unsupported Content-Type.",
    429: "Rate limit or account lock-out; see Retry-After.",
    503: "Storage or the rate limit is temporarily unavailable; try again after Retry-After.",
}

COMMON_ERRORS = (400, 401, 403, 404, 429)


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for the given error statuses, all in the one error shape."""
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=_ERROR_TEXT[code])
        for code in codes
    }
