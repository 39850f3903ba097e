"""API tokens: made, checked, revoked.

A token is `dpt_` and 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored; a fast hash is enough because the secret is random, not a password, and an
equality lookup on the digest finds the row in one indexed query. The last-used time is
written at most once a minute, so a busy client does not turn every read into a write,
and the token row is cached briefly in the shared cache (see `_CACHE_SECONDS`).

The cached row is read on every request, never kept in a process: revoking deletes it,
so the next request anywhere reads the row from the database and is refused. What a
process does keep is which user a token belongs to (that never changes), so the API can
count the user's rate limit in the same Redis round trip that reads the token
(`token_authenticate(lookup=...)`). When the cache is down, tokens are checked against
the database alone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache as cache_for_process

from django.core.cache import cache
from django.db import transaction
from django.db.models import JSONField, Model, QuerySet
from django.db.models.base import ModelState
from django.utils import timezone

from catalog.api.generations import cache_failed, cache_usable
from catalog.audit import Actor, audit_record
from catalog.exceptions import DomainError, InvalidInput
from catalog.models import ApiToken, Dataset, TokenKind, TokenScope
from catalog.services import ensure_steward

TOKEN_PREFIX = "dpt_"
_PREFIX_SHOWN = 12
_TOUCH_EVERY = timedelta(minutes=1)
# A token row (with its user) is kept in the shared cache for this long, so most
# requests authenticate without a database query. Revoking deletes the entry at once;
# expiry is checked on every request; a deactivated user's tokens stop within this time.
_CACHE_SECONDS = 30
PERSONAL_DEFAULT_LIFETIME = timedelta(days=90)
DEVICE_DEFAULT_LIFETIME = timedelta(days=30)
MAX_LIFETIME = timedelta(days=366)


class TokenRefused(DomainError):
    """The presented token cannot authenticate: unknown, expired, revoked, or its user
    is inactive."""

    code = "authentication_failed"


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _expiry(expires_at: datetime | None, *, default: timedelta) -> datetime:
    now = timezone.now()
    if expires_at is None:
        return now + default
    if timezone.is_naive(expires_at):
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= now:
        raise InvalidInput("The expiry must be in the future.", details={"field": "expires_at"})
    if expires_at > now + MAX_LIFETIME:
        raise InvalidInput(
            f"A token lives at most {MAX_LIFETIME.days} days.", details={"field": "expires_at"}
        )
    return expires_at


def token_create(
    *,
    user,
    name: str,
    actor: Actor,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    dataset: Dataset | None = None,
) -> tuple[ApiToken, str]:
    """Makes a token for `user`; returns it with its secret, which is never shown again.

    With `dataset`, a device token: scope `publish` only, bound to that dataset, and the
    user must steward the dataset's organisation (Forbidden otherwise). The caller makes
    sure the user may see the dataset at all.
    """
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("Give the token a name of 1 to 100 characters.")
    if dataset is not None:
        ensure_steward(actor=Actor(user=user), organization=dataset.organization)
        if scopes and set(scopes) != {TokenScope.PUBLISH}:
            raise InvalidInput("A device token has the publish scope only.")
        scopes = [TokenScope.PUBLISH.value]
        kind = TokenKind.DEVICE
        expiry = _expiry(expires_at, default=DEVICE_DEFAULT_LIFETIME)
    else:
        scopes = sorted(set(scopes or []))
        unknown = set(scopes) - set(TokenScope.values)
        if not scopes or unknown:
            raise InvalidInput(
                f"Scopes are one or more of {', '.join(TokenScope.values)}.",
                details={"field": "scopes"},
            )
        kind = TokenKind.PERSONAL
        expiry = _expiry(expires_at, default=PERSONAL_DEFAULT_LIFETIME)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            kind=kind,
            scopes=scopes,
            dataset=dataset,
            prefix=raw[:_PREFIX_SHOWN],
            digest=token_digest(raw),
            expires_at=expiry,
        )
        audit_record(
            actor=actor,
            action="token.create",
            obj=token,
            organization=dataset.organization if dataset else None,
            details={
                "kind": kind,
                "scopes": scopes,
                "dataset": dataset.path if dataset else None,
                "expires_at": expiry.isoformat(),
            },
        )
    return token, raw


def token_revoke(*, token: ApiToken, actor: Actor) -> ApiToken:
    """Revokes the token at once; revoking it again changes nothing."""
    if token.revoked_at is not None:
        return token
    with transaction.atomic():
        token.revoked_at = timezone.now()
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=token.revoked_at)
        # Now, and again after commit, in case a request cached the row in between.
        _cache_forget(token.digest)
        transaction.on_commit(lambda: _cache_forget(token.digest))
        audit_record(
            actor=actor,
            action="token.revoke",
            obj=token,
            organization=token.dataset.organization if token.dataset_id else None,
        )
    return token


def _cache_forget(digest: str) -> None:
    """Deletes a token's cached row. A cache that cannot be reached keeps it at most
    `_CACHE_SECONDS` (its entries then expire), and requests meanwhile read the
    database, so this is logged, never raised: the revocation is committed either way."""
    try:
        cache.delete(_cache_key(digest))
    except Exception:
        cache_failed("A revoked token cannot be removed from the cache")


def _cache_key(digest: str) -> str:
    return f"apitoken:{digest}"


# Which user each token seen by this process belongs to (a token's user never changes).
_users_of: dict[str, int] = {}
_USERS_KEPT = 10_000


def token_user_id(raw: str) -> int | None:
    """The user of a token this process has already authenticated, else None. Says
    nothing of whether the token still works."""
    return _users_of.get(token_digest(raw))


def _cache_get(key: str) -> ApiToken | None:
    if not cache_usable():
        return None
    try:
        return cache.get(key)
    except Exception:
        cache_failed("A token cannot be read from the cache")
        return None


def _cache_set(key: str, token: ApiToken) -> None:
    if not cache_usable():
        return
    try:
        cache.set(key, token, _CACHE_SECONDS)
    except Exception:
        cache_failed("A token cannot be kept in the cache")


def _instance_copied(instance: Model) -> Model:
    """`instance` and the related instances it holds (`select_related`), copied: new
    instances with their own state and their own JSON values, as unpickling them again
    would give, at a fraction of its cost. Other field values are immutable (numbers,
    strings, datetimes), so they are shared."""
    values = instance.__dict__.copy()
    for name in _json_attnames(type(instance)):
        if name in values:
            values[name] = _json_copied(values[name])
    kept = instance._state
    state = values["_state"] = ModelState()
    state.db, state.adding = kept.db, kept.adding
    state.fields_cache = {
        name: None if related is None else _instance_copied(related)
        for name, related in kept.fields_cache.items()
    }
    copied = instance.__class__.__new__(instance.__class__)
    copied.__dict__ = values
    return copied


@cache_for_process
def _json_attnames(model: type[Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in model._meta.concrete_fields if isinstance(f, JSONField))


def _json_copied(value):
    if type(value) is list:
        return [_json_copied(item) for item in value]
    if type(value) is dict:
        return {key: _json_copied(item) for key, item in value.items()}
    return value


def token_authenticate(*, raw: str, lookup: Callable[[str], object] | None = None) -> ApiToken:
    """The live token behind `raw`, with its user and dataset loaded; raises TokenRefused.

    `lookup(key)` reads the cached row at `key` (default: one cache read), so a caller
    can fold that read into a round trip it makes anyway; None means not cached."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        raise TokenRefused("The token is not valid.")
    digest = token_digest(raw)
    key = _cache_key(digest)
    token = (lookup or _cache_get)(key)
    if isinstance(token, ApiToken):
        # This request's own copy: a cached row read in the round trip is decoded once
        # and handed out again (`limits_precount`), and a request may change its token
        # (touched below) or its user (Django caches permissions on it).
        token = _instance_copied(token)
    else:
        token = (
            ApiToken.objects.select_related("user", "dataset__organization")
            .filter(digest=digest)
            .first()
        )
        if token is None:
            raise TokenRefused("The token is not valid.")
        _cache_set(key, token)
    if len(_users_of) >= _USERS_KEPT:
        _users_of.clear()
    _users_of[digest] = token.user_id
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRefused("The token has been revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused("The token has expired.")
    if not token.user.is_active:
        raise TokenRefused("The token's user is inactive.")
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
        _cache_set(key, token)
    return token


def tokens_of(user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).select_related("dataset__organization")
