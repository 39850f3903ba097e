"""Answers of the API that change only on publish, cached in the shared cache.

Keys are made of what decides the answer: who the caller is as far as visibility goes
(their organisations, a device token's dataset, or anonymous), what they asked, and the
catalog's generations (`catalog.api.generations`), which move with every change to a
dataset, version or manifest. A change therefore makes a new key rather than having to
find and delete old ones, and one organisation's members never share a key with
another's. Superusers (who see everything) are not cached.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from catalog.api.generations import ANSWER_SECONDS, generations_of, member_organizations
from catalog.api.permissions import device_dataset_id


def _digest(*parts: object) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()


def caller_scope(request) -> tuple[str, list[tuple[int, str]]] | None:
    """What decides which datasets the caller sees, as text, with their organisations;
    None when their answers are not cached."""
    user = request.user
    if not user.is_authenticated:
        return "anonymous", []
    organizations = member_organizations(user)
    if organizations is None:
        return None
    scope = "members:" + ",".join(str(pk) for pk, _ in organizations)
    device = device_dataset_id(request)
    if device is not None:
        scope += f":device:{device}"
    return scope, organizations


def list_key(request) -> str | None:
    """The key of a dataset list answer, or None when it is not cached."""
    scope = caller_scope(request)
    if scope is None or "indent" in request.headers.get("Accept", ""):
        return None
    (generation,) = generations_of([])
    return "api-list:" + _digest(scope[0], request.build_absolute_uri(), generation)


def manifest_key(organization_ids: list[int]) -> str:
    generations = generations_of(organization_ids)
    return "api-manifest:" + _digest(organization_ids, generations)


def seconds_until_stale_changes(results: list[dict], now: datetime) -> float:
    """How long a page of datasets stays as it is: until the first one that has a
    freshness deadline reaches it (its `stale` flag flips then)."""
    seconds = float(ANSWER_SECONDS)
    for dataset in results:
        hours, current = dataset["freshness_hours"], dataset["current_version"]
        if not hours or current is None:
            continue
        published = datetime.fromisoformat(current["published_at"].replace("Z", "+00:00"))
        left = (published + timedelta(hours=hours) - now).total_seconds()
        if left > 0:
            seconds = min(seconds, left)
    return seconds


def version_key(
    request, *, layer: str, name: str, org: str | None, version: str | None
) -> str | None:
    """The key of the dataset and version a request names, or None when not cached."""
    scope = caller_scope(request)
    if scope is None:
        return None
    (generation,) = generations_of([])
    return "api-version:" + _digest(scope[0], layer, name, org, version, generation)
