"""What one request was, as a usage event: its kind, who, which dataset, how it went.

Called by `usage.middleware` after the answer is complete. Everything here is cheap and
local (no query, no network): the user agent is kept raw and classified by the ingest
task, the dataset and version come from what the view noted (`catalog.usage_hooks`),
and a served object's key is resolved to its version at ingest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import re
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

from catalog.addresses import client_ip, from_trusted_proxy
from catalog.usage_hooks import usage_facts
from usage.models import Kind

MEASURED_PREFIXES = ("/api/v1/", "/objects/")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")

# Route names (with or without the `org:` namespace) of read endpoints.
_READ_KINDS = {
    "dataset-list": Kind.LIST,
    "dataset-detail": Kind.DETAIL,
    "version-list": Kind.VERSIONS,
    "version-detail": Kind.VERSION,
    "version-changes": Kind.CHANGES,
    "version-lineage": Kind.LINEAGE,
    "dataset-diff": Kind.DIFF,
    "dataset-rollbacks": Kind.VERSIONS,
    "dataset-download": Kind.DOWNLOAD,
    "dataset-proxy": Kind.DOWNLOAD,
    "dataset-raw": Kind.RAW,
    "dataset-rows": Kind.ROWS,
    "manifest": Kind.MANIFEST,
    "manifest-latest": Kind.MANIFEST,
    "publish-job": Kind.JOB,
    "signed-object": Kind.OBJECT,
}
_LIFECYCLE = {
    "version-promote",
    "version-deprecate",
    "version-archive",
    "version-restore",
    "dataset-rollback",
}


def is_measured(path: str) -> bool:
    return path.startswith(MEASURED_PREFIXES)


def kind_of(request: HttpRequest) -> str:
    match = request.resolver_match
    name = (match.url_name if match else None) or ""
    if not name and request.path.rstrip("/").endswith("/dataset-proxy"):
        name = "dataset-proxy"
    if name.startswith("usage-"):
        return Kind.USAGE
    if name.startswith("token-"):
        return Kind.TOKENS
    if request.method in ("GET", "HEAD"):
        kind = _READ_KINDS.get(name, Kind.OTHER)
        if kind == Kind.ROWS and request.GET.get("format") in ("csv", "ndjson"):
            return Kind.EXPORT
        return kind
    if name == "version-list" and request.method == "POST":
        return Kind.PUBLISH
    if name in _LIFECYCLE:
        return Kind.LIFECYCLE
    return Kind.OTHER


def country_of(request: HttpRequest) -> str:
    """The country header, believed only from one of our proxies (`TRUSTED_PROXIES`);
    "" when unknown."""
    header = settings.USAGE_COUNTRY_HEADER
    if not header or not from_trusted_proxy(request):
        return ""
    value = request.META.get(_meta_name(header), "").strip().upper()
    return value if _COUNTRY.match(value) else ""


@lru_cache(maxsize=16)
def _meta_name(header: str) -> str:
    # Where WSGI puts a request header (request.headers builds a mapping of them all).
    return "HTTP_" + header.upper().replace("-", "_")


def client_of(address: str, user_agent: str) -> str:
    """A keyed hash of address and user agent: the same visitor gives the same value,
    and the address cannot be read back from it."""
    return _client_hash(settings.SECRET_KEY, address, user_agent)


@lru_cache(maxsize=4096)
def _client_hash(key: str, address: str, user_agent: str) -> str:
    # A client sends request after request: its hash is worked out once.
    message = f"{address}\n{user_agent}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:32]


def request_id_of(request: HttpRequest) -> str:
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    return given if _REQUEST_ID.match(given) else random_id()


# The ids must be unique, not secret: they come from a generator seeded from the
# system's randomness, again in a forked child (one system call per process, where
# `uuid4` makes one per id).
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def random_id() -> str:
    """128 random bits as 32 hex digits: an event's id, a request's own id."""
    return f"{_ids.getrandbits(128):032x}"


def _user_if_known(request: HttpRequest):
    """The user the view already looked up; never a query of its own (an object served
    to a signed URL needs no user, and its session is not worth a lookup)."""
    user = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    return user


def record_build(
    request: HttpRequest,
    response: HttpResponseBase,
    *,
    occurred_at: float,
    response_ms: int,
    request_id: str,
) -> dict[str, Any]:
    """The event as the buffer keeps it (JSON); bytes are filled in when known."""
    facts = usage_facts(request)
    dataset = facts.get("dataset")
    version = facts.get("version")
    user = _user_if_known(request)
    token = getattr(request, "auth", None)
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:512]
    record: dict[str, Any] = {
        "id": random_id(),
        "t": occurred_at,
        "organization": dataset.organization_id if dataset is not None else None,
        "dataset": dataset.pk if dataset is not None else None,
        "version": version.pk if version is not None else None,
        "user": user.pk if user is not None and user.is_authenticated else None,
        "token": getattr(token, "pk", None),
        "kind": facts.get("kind") or kind_of(request),
        "status": response.status_code,
        "ms": response_ms,
        "bytes": 0,
        "country": country_of(request),
        "ua": user_agent,
        "client": client_of(client_ip(request) or "", user_agent),
        "rid": request_id,
    }
    if record["kind"] == Kind.OBJECT and request.resolver_match:
        record["object_key"] = request.resolver_match.kwargs.get("key", "")
    return record


def now() -> float:
    return time.time()
