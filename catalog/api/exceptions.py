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
