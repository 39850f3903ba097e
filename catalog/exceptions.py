"""The domain errors every service raises.

One small hierarchy, so that the admin, the API, commands and tasks can each turn any
of them into their own kind of answer (a form error, the API error shape, a command
error, a failed job) without knowing where it came from. Each carries a stable `code`
for machines and a message written for a data steward.
"""

from __future__ import annotations


class DomainError(Exception):
    """Something the caller asked for cannot be done; the message says why."""

    code = "error"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(DomainError):
    code = "invalid"


class FileRejected(InvalidInput):
    """The uploaded file cannot be published as it is (empty, ragged, not UTF-8...)."""

    code = "file_rejected"


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    code = "conflict"


class StorageUnavailable(DomainError):
    """A temporary storage failure: the operation may succeed if tried again."""

    code = "storage_unavailable"
