"""Under `/api/`, every error is the API's JSON error shape, in every mode.

DRF views answer errors through `catalog.api.errors.exception_handler`, and
`handler404`/`handler400` do the same for unknown addresses when DEBUG is off. What
neither reaches: Django's own debug pages (DEBUG on, the embedded mode's default) for an
unknown path or a bad `Host`, and answers made by middleware (a lock-out page). A client
of the API parses JSON whatever went wrong, so this middleware, outermost, turns any
error answer under `/api/` that is not JSON into the error shape with the same status
(and the same `Retry-After`, `Allow` and `WWW-Authenticate` headers).
"""

from __future__ import annotations

from django.http import JsonResponse

from catalog.api.errors import error_body

API_PREFIX = "/api/"
_KEPT_HEADERS = ("Retry-After", "Allow", "WWW-Authenticate")
_CODES = {
    400: ("bad_request", "The request was malformed."),
    401: ("not_authenticated", "Authentication is needed."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("too_large", "The request body is larger than allowed."),
    429: ("throttled", "Too many requests; slow down."),
}
_SERVER_ERROR = ("internal", "Something went wrong on our side; it has been logged.")


def _is_json(response) -> bool:
    content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def api_error_response(status: int) -> JsonResponse:
    """The error shape for a bare status code."""
    code, message = _CODES.get(status, _SERVER_ERROR if status >= 500 else ("error", "Refused."))
    return JsonResponse(error_body(code, message), status=status)


class ApiErrorShapeMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path_info.startswith(API_PREFIX)
            and not _is_json(response)
        ):
            shaped = api_error_response(response.status_code)
            for name in _KEPT_HEADERS:
                if name in response:
                    shaped[name] = response[name]
            return shaped
        return response
