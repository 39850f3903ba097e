"""Small extension points that let a later app change how catalog and versioning behave
without either of them importing it (replication fills them in its `AppConfig.ready()`):

- **Download locators**: where a version's bytes are signed for a download. The download
  views ask `download_locate(version=..., region=...)`; a locator answers a `Location`
  (a store holding a verified copy, the region's code, a CDN URL for public datasets)
  or None, and with no locator (or no answer) the primary storage serves, as before.
- **Local stores**: the embedded mode's signed-URL view serves objects of named local
  folders (a region's folder) as well as the primary one; `local_store_resolve(name)`
  finds the folder for the name a signed URL carries.
- **Demo extenders**: `manage.py demo` calls each with the demo organisation, so an app
  can add its own demo rows (regions and rules) before the demo versions are published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalog.models import Organization
    from catalog.storage import LocalObjectStore, ObjectStore


@dataclass(frozen=True)
class Location:
    """Where a download is signed: `store` holds the object at the version's key."""

    store: ObjectStore
    region: str
    cdn_url: str = ""


Locator = Callable[..., "Location | None"]
LocalStoreResolver = Callable[[str], "LocalObjectStore | None"]
DemoExtender = Callable[..., None]

_locators: list[Locator] = []
_local_resolvers: list[LocalStoreResolver] = []
_demo_extenders: list[DemoExtender] = []


def _add(registry: list, fn) -> None:
    if fn not in registry:
        registry.append(fn)


def download_locator_register(fn: Locator) -> None:
    """`fn(version=..., region=...)` answers a Location or None; `region` may be ""."""
    _add(_locators, fn)


def download_locate(*, version: Any, region: str) -> Location | None:
    """The first locator's answer for `version` in `region` (a domain error such as an
    unknown region propagates to the caller)."""
    for fn in _locators:
        location = fn(version=version, region=region)
        if location is not None:
            return location
    return None


def local_store_resolver_register(fn: LocalStoreResolver) -> None:
    _add(_local_resolvers, fn)


def local_store_resolve(name: str) -> LocalObjectStore | None:
    for fn in _local_resolvers:
        store = fn(name)
        if store is not None:
            return store
    return None


def demo_extender_register(fn: DemoExtender) -> None:
    """`fn(organization=..., stdout=...)`; it must change nothing when run again."""
    _add(_demo_extenders, fn)


def demo_extend(*, organization: Organization, stdout) -> None:
    for fn in _demo_extenders:
        fn(organization=organization, stdout=stdout)
