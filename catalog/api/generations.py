"""Generations of the catalog: numbers in the shared cache that change whenever what the
API shows changes, so that answers which change only on publish can be cached under them.

- one generation per organisation: it moves when a dataset, version or manifest of that
  organisation changes (the manifest's cache key is made of these);
- one for the whole catalog: it moves with any organisation's (the list's cache key, as a
  signed-in caller also sees other organisations' public and internal datasets).

What moves them is the database itself: every change to a dataset's visible state is a
`Dataset` save or a domain event in the outbox (publish, rollback, deprecation, a new
manifest), written in the same transaction as the change. The handlers below, connected
in `CatalogConfig.ready()`, bump the organisation's generation at once and again after
commit, so a request that read the database before the commit can never store its answer
under the generation that follows it. Membership changes drop the member's cached set of
organisations. Tests see this directly: a change is seen by the very next call.

A generation starts at the clock in nanoseconds, not at 0, so one evicted from the cache
and started again never repeats a number an old cached answer was stored under.
"""

from __future__ import annotations

import time

from django.core.cache import cache
from django.db import transaction

from catalog.models import Membership
from catalog.selectors import organizations_of

_ALL = "api-gen:all"
# Cached answers live at most this long, whatever the generations say.
ANSWER_SECONDS = 600
_MEMBER_SECONDS = 300


def _org_key(organization_id: int) -> str:
    return f"api-gen:org:{organization_id}"


def _members_key(user_id: int) -> str:
    return f"api-orgs:{user_id}"


def _fresh() -> int:
    return time.time_ns()


def _bump_now(keys: list[str]) -> None:
    for key in keys:
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, _fresh(), None)


def generations_bump(*, organization_id: int | None) -> None:
    """Moves the catalog's generation (and the organisation's, when given) now and again
    after the current transaction commits."""
    keys = [_ALL] if organization_id is None else [_org_key(organization_id), _ALL]
    _bump_now(keys)
    transaction.on_commit(lambda: _bump_now(keys))


def generations_of(organization_ids: list[int]) -> tuple[int, ...]:
    """The generations of the catalog and of these organisations, in one round trip."""
    keys = [_ALL, *(_org_key(pk) for pk in organization_ids)]
    found = cache.get_many(keys)
    missing = {key: _fresh() for key in keys if key not in found}
    if missing:
        for key, value in missing.items():
            # A concurrent first reader may win: read back whatever was stored.
            if not cache.add(key, value, None):
                missing[key] = cache.get(key, value)
        found |= missing
    return tuple(found[key] for key in keys)


def member_organizations(user) -> list[tuple[int, str]] | None:
    """(id, slug) of the organisations `user` is a member of, from the shared cache;
    None for a superuser (every organisation) or an anonymous caller."""
    if not getattr(user, "is_authenticated", False) or user.is_superuser:
        return None
    key = _members_key(user.pk)
    found = cache.get(key)
    if found is None:
        found = sorted(organizations_of(user).values_list("pk", "slug"))
        cache.set(key, found, _MEMBER_SECONDS)
    return found


def _forget_members(user_id: int) -> None:
    key = _members_key(user_id)
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key))


# --- Handlers, connected in CatalogConfig.ready() ---------------------------------------


def on_dataset_saved(sender, instance, **kwargs) -> None:
    generations_bump(organization_id=instance.organization_id)


def on_event_recorded(sender, instance, created=False, **kwargs) -> None:
    if created:
        generations_bump(organization_id=instance.organization_id)


def on_organization_saved(sender, instance, **kwargs) -> None:
    generations_bump(organization_id=instance.pk)


def on_membership_saved(sender, instance: Membership, **kwargs) -> None:
    _forget_members(instance.user_id)
    generations_bump(organization_id=instance.organization_id)


def on_user_saved(sender, instance, **kwargs) -> None:
    # Becoming (or ceasing to be) a superuser changes which organisations one sees.
    _forget_members(instance.pk)
