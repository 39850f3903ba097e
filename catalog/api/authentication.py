"""How API callers prove who they are.

- `Authorization: Bearer <token>` (or `Token <token>`): an API token, the usual way for
  apps, notebooks, pipelines and devices. `request.auth` is the `ApiToken`.
- The session cookie of a signed-in user (with CSRF on writes): the browser, the docs.
  `request.auth` is None and the user acts with every scope.
- HTTP Basic with username and password, only where a view says `accepts_basic = True`
  (the token endpoint, so a script can get its first token). Failed passwords count
  towards the lock-out (django-axes) exactly as on the admin login.

Any other Authorization scheme is refused with 401 rather than ignored: a caller who
sends credentials expects them to be used, and silently treating them as anonymous
would hand back only public data with a 200.
"""

from __future__ import annotations

import base64
import binascii

from django.contrib.auth import authenticate
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from catalog.api.exceptions import AccountLocked
from catalog.api.throttling import limits_precount
from catalog.models import ApiToken
from catalog.tokens import TOKEN_PREFIX, TokenRefused, token_authenticate, token_user_id

_TOKEN_KEYWORDS = {"bearer", "token"}
BEARER_CHALLENGE = 'Bearer realm="api"'


def _view_accepts_basic(request) -> bool:
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return bool(getattr(view, "accepts_basic", False))


def bearer_token_of(header: str, *, basic_allowed: bool = False) -> str | None:
    """The token in an Authorization header; None when there is none (no header, or
    Basic where the view accepts it); AuthenticationFailed for any other scheme or a
    malformed token."""
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() not in _TOKEN_KEYWORDS:
        if scheme.lower() == "basic" and basic_allowed:
            return None
        raise exceptions.AuthenticationFailed(
            "Unsupported Authorization scheme: send 'Authorization: Bearer <token>'."
        )
    raw = rest.strip()
    if not raw or " " in raw or not raw.isascii() or not raw.isprintable():
        raise exceptions.AuthenticationFailed(
            "Malformed Authorization header: send 'Authorization: Bearer <token>'."
        )
    return raw


def token_checked(request, raw: str, *, throttles) -> ApiToken:
    """The live token `raw`; AuthenticationFailed otherwise. A token this process has
    seen before is read with the user's rate limits (`throttles`, the view's) and the
    catalog's generation in one round trip (`limits_precount`)."""
    user_id = token_user_id(raw) if raw.startswith(TOKEN_PREFIX) else None
    lookup = None
    if user_id is not None:

        def lookup(key: str):
            return limits_precount(request, throttles=throttles, user_id=user_id, also_get=key)

    try:
        return token_authenticate(raw=raw, lookup=lookup)
    except TokenRefused as exc:
        raise exceptions.AuthenticationFailed(exc.message) from None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = bearer_token_of(
            request.META.get("HTTP_AUTHORIZATION", ""), basic_allowed=_view_accepts_basic(request)
        )
        if raw is None:
            return None
        view = (getattr(request, "parser_context", None) or {}).get("view")
        token = token_checked(request, raw, throttles=view.get_throttles() if view else [])
        return token.user, token

    def authenticate_header(self, request):
        return BEARER_CHALLENGE


class PasswordBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic for the views that accept it, through Django's authenticate(), so that
    django-axes counts failures and locks the account for that address."""

    def authenticate(self, request):
        if not _view_accepts_basic(request):
            return None
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise exceptions.AuthenticationFailed("Malformed Basic credentials.") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise exceptions.AuthenticationFailed("Malformed Basic credentials.")
        return self.authenticate_credentials(username, password, request)

    def authenticate_credentials(self, userid, password, request=None):
        http_request = request._request
        user = authenticate(request=http_request, username=userid, password=password)
        if getattr(http_request, "axes_locked_out", False):
            # Answered here in the API's error shape, not by the axes middleware's page.
            http_request.axes_locked_out = False
            raise AccountLocked()
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Invalid username or password.")
        return user, None

    def authenticate_header(self, request):
        return 'Basic realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer dpt_...` (or `Token dpt_...`).",
        }


class PasswordBasicScheme(OpenApiAuthenticationExtension):
    target_class = PasswordBasicAuthentication
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Username and password; only on /tokens/, to get a first token.",
        }
