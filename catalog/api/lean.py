"""The API's hottest reads, answered below DRF's dispatch.

A client polling the manifest with If-None-Match, asking for signed URLs one file
after another, or paging through a version's rows, makes the same request again and
again: a token this process has seen, one Redis round trip (token, rate limit and the
catalog's generation), an answer from the cache (or, for rows, the columnar copy).
Measured in process, DRF's own dispatch around that (its Request wrapper with parsers,
authenticators and negotiator, content negotiation, the permission and throttle
classes, the Response and its renderer) cost about as much as the view.

`LeanTokenRead` takes a view's GET and HEAD off that path when the request is the
common case: a well-formed `Bearer`/`Token` header with a token this process has
authenticated before, and an Accept header DRF would answer with plain JSON anyway.
It checks exactly what DRF would, through the same functions (`token_checked`, the
view's scopes and throttle classes), then calls the view's handler with Django's
request, which carries the user and token as DRF leaves them there. The handler
returns a finished `HttpResponse`, so both paths send the same bytes. Any refusal or
error is answered by DRF's own `handle_exception` and `finalize_response`, so its shape
and headers are DRF's. Every other request (anonymous, a session, Basic, another
method, an unusual Accept) takes DRF's dispatch unchanged.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from catalog.api.authentication import bearer_token_of, token_checked
from catalog.api.permissions import required_scope, token_allows
from catalog.tokens import TOKEN_PREFIX, token_user_id

# Accept headers that DRF's negotiation answers with compact JSON, as the lean path does.
_PLAIN_ACCEPT = {"", "*/*", "application/json", "application/*"}
_renderer = JSONRenderer()


def json_response(body: object, *, status: int = 200, headers=None) -> HttpResponse:
    """`body` as DRF's JSON renderer writes it (compact, UTF-8), ready to send."""
    return HttpResponse(
        _renderer.render(body), status=status, content_type="application/json", headers=headers
    )


def _lean_token(request) -> str | None:
    """The request's token when it can take the lean path, else None."""
    if request.method not in ("GET", "HEAD"):
        return None
    if request.META.get("HTTP_ACCEPT", "").strip() not in _PLAIN_ACCEPT:
        return None
    try:
        raw = bearer_token_of(request.META.get("HTTP_AUTHORIZATION", ""))
    except exceptions.AuthenticationFailed:
        return None  # DRF words the refusal
    if raw is None or not raw.startswith(TOKEN_PREFIX) or token_user_id(raw) is None:
        return None
    return raw


class LeanTokenRead:
    """For an `APIView` whose `get` returns an `HttpResponse` and reads the request
    through what Django's request and DRF's share (`GET`, `headers`, `user`, `auth`)."""

    def dispatch(self, request, *args, **kwargs):
        raw = _lean_token(request)
        if raw is None:
            return super().dispatch(request, *args, **kwargs)
        self.args, self.kwargs, self.request = args, kwargs, request
        authenticated = False
        try:
            try:
                token = token_checked(request, raw, throttles=self.get_throttles())
            except exceptions.AuthenticationFailed:
                request.user, request.auth = AnonymousUser(), None
                raise
            request.user, request.auth = token.user, token
            authenticated = True
            scope = required_scope(self, request.method)
            if not token_allows(token, scope):
                raise exceptions.PermissionDenied(
                    f"This token lacks the '{scope}' scope."
                    if scope
                    else "API tokens cannot be used here; sign in instead.",
                    code="insufficient_scope",
                )
            self.check_throttles(request)
            response = getattr(self, request.method.lower())(request, *args, **kwargs)
        except Exception as exc:
            return self._lean_refusal(request, exc, authenticated, args, kwargs)
        response["Allow"] = self._allow_header()
        return response

    def _lean_refusal(self, request, exc, authenticated: bool, args, kwargs):
        """`exc` answered as DRF's dispatch answers it, on DRF's request wrapper set up
        as its authentication would have left it (nothing is counted or read again)."""
        drf_request = self.initialize_request(request, *args, **kwargs)
        # Marked authenticated (or not), so nothing reading `user` on it authenticates
        # again (a second round trip, a second count).
        drf_request._authenticator = drf_request.authenticators[0] if authenticated else None
        drf_request._user, drf_request._auth = request.user, request.auth
        self.request = drf_request
        self.headers = self.default_response_headers
        response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response

    def _allow_header(self) -> str:
        # DRF's `Allow` (its `allowed_methods`, HEAD included), the same for every
        # instance of the class: worked out once.
        allow = type(self).__dict__.get("_lean_allow")
        if allow is None:
            allow = type(self)._lean_allow = ", ".join(self.allowed_methods)
        return allow
