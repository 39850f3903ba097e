"""Answers of the API that change only on publish, cached in the shared cache.

An answer is stored with the catalog's generation (`catalog.api.generations`) it was
worked out under, and served only while that is still the generation: every change to a
dataset, version, manifest or membership moves it. Keys are made of who asks (the user,
and a device token's dataset; anonymous callers share one key) and what they asked, so
no caller is ever served what another may see. Superusers (who see everything) are not
cached.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from catalog.api.generations import ANSWER_SECONDS
from catalog.api.permissions import device_dataset_id


def _digest(*parts: object) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()


def _caller(request) -> str | None:
    """Who the caller is, as far as what they may see goes; None when not cached."""
    user = request.user
    if not user.is_authenticated:
        return "anonymous"
    if user.is_superuser:
        return None
    caller = f"user:{user.pk}"
    device = device_dataset_id(request)
    if device is not None:
        caller += f":device:{device}"
    return caller


def list_key(request) -> str | None:
    """The key of a dataset list answer, or None when it is not cached."""
    caller = _caller(request)
    if caller is None or "indent" in request.META.get("HTTP_ACCEPT", ""):
        return None
    return "api-list:" + _digest(caller, request.build_absolute_uri())


def manifest_key(request, *, slug: str | None) -> str | None:
    caller = _caller(request)
    if caller is None:
        return None
    return "api-manifest:" + _digest(caller, slug)


def version_key(
    request, *, layer: str, name: str, org: str | None, version: str | None
) -> str | None:
    """The key of the dataset and version a request names, or None when not cached."""
    caller = _caller(request)
    if caller is None:
        return None
    return "api-version:" + _digest(caller, layer, name, org, version)


def seconds_until_stale_changes(results: list[dict], now: datetime) -> float:
    """How long a page of datasets stays as it is: until the first one that has a
    freshness deadline reaches it (its `stale` flag flips then)."""
    seconds = float(ANSWER_SECONDS)
    for dataset in results:
        hours, current = dataset["freshness_hours"], dataset["current_version"]
        if not hours or current is None:
            continue
        published = datetime.fromisoformat(current["published_at"].replace("Z", "+00:00"))
        try:
            left = (published + timedelta(hours=hours) - now).total_seconds()
        except OverflowError:
            continue  # a deadline past year 9999 never flips
        if left > 0:
            seconds = min(seconds, left)
    return seconds
