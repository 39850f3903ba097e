"""API-only errors (DRF exceptions), kept apart from `errors` so that authentication
classes can raise them without importing DRF's views."""

from __future__ import annotations

from rest_framework import exceptions, status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is larger than allowed."


class AccountLocked(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked"
    default_detail = "Too many failed sign-ins for this account from this address; try again later."

    def __init__(self, wait: int | None = None) -> None:
        super().__init__()
        self.wait = wait


class LimitUnavailable(exceptions.APIException):
    """A rate limit could not be checked (the shared cache is unreachable): the request
    is neither let through unlimited nor failed with a 500."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "limit_unavailable"
    default_detail = "The rate limit cannot be checked right now; try again shortly."

    def __init__(self, wait: int = 5) -> None:
        super().__init__()
        self.wait = wait
