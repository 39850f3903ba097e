"""What an API caller may do, before any object is looked up.

Each view names the token scope every HTTP method needs (`required_scopes`). A session
user acts with all scopes: what they may do then depends only on their roles, which the
services check. A token acts with its own scopes (`admin` includes the others), and a
device token additionally sees only its one dataset (`device_dataset_id`). A method the
view names no scope for is refused to every token: new endpoints fail closed.

A device token (an edge device's) may only upload new files to its dataset: it is
refused every steward action (rollback, the lifecycle), publishing an object already in
the bucket, and the publish options that reach beyond one new file (`allow_breaking`, a
draft or pre-release, `inputs`): `device_refuse` says so with 403.

Anonymous callers may use GET where a view sets `anonymous_read` (public datasets).
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from catalog.exceptions import Forbidden
from catalog.models import ApiToken, TokenKind, TokenScope


def request_token(request) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


def device_dataset_id(request) -> int | None:
    """The one dataset a device token is bound to; None for any other caller."""
    token = request_token(request)
    if token is not None and token.kind == TokenKind.DEVICE:
        return token.dataset_id
    return None


def device_refuse(request, action: str) -> None:
    """Raises Forbidden when a device token asks for `action` (words after "cannot")."""
    if device_dataset_id(request) is not None:
        raise Forbidden(
            f"A device token may only upload new files to its dataset; it cannot {action}. "
            "Use a personal token of a steward."
        )


def required_scope(view, method: str) -> str | None:
    method = "GET" if method in ("HEAD", "OPTIONS") else method
    return getattr(view, "required_scopes", {}).get(method)


def token_allows(token: ApiToken, scope: str | None) -> bool:
    if scope is None:
        return False
    scopes = set(token.scopes)
    return TokenScope.ADMIN in scopes or scope in scopes


class ScopePermission(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            # DRF answers 401 (not 403) when no credentials were given.
            return request.method in ("GET", "HEAD") and getattr(view, "anonymous_read", False)
        token = request_token(request)
        if token is None:
            return True
        scope = required_scope(view, request.method)
        if token_allows(token, scope):
            return True
        self.message = (
            f"This token lacks the '{scope}' scope."
            if scope
            else "API tokens cannot be used here; sign in instead."
        )
        self.code = "insufficient_scope"
        return False
