"""What a request was about, noted for whoever measures usage.

The usage app records every API request from a middleware, but only a view knows which
dataset and version a request resolved to (and it may have found them in the cache,
without a query). Views and `catalog.api.access` call `usage_note()` with what they
found; the middleware reads it when the response is done. The note is a plain attribute
on the Django request, so neither `catalog` nor `versioning` imports the usage app, and
with the usage app absent the note costs one attribute write.
"""

from __future__ import annotations

from typing import Any

ATTRIBUTE = "usage_facts"


def usage_note(request: Any, **facts: Any) -> None:
    """Adds `facts` (dataset, version, kind, bytes...) to the request's usage note.

    Takes a Django `HttpRequest` or a DRF `Request` (whose Django request it notes).
    """
    http_request = getattr(request, "_request", request)
    noted = getattr(http_request, ATTRIBUTE, None)
    if noted is None:
        noted = {}
        setattr(http_request, ATTRIBUTE, noted)
    noted.update(facts)


def usage_facts(request: Any) -> dict[str, Any]:
    """What views noted about this request (empty when nothing was)."""
    return getattr(getattr(request, "_request", request), ATTRIBUTE, None) or {}
