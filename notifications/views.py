"""One-click unsubscribe (RFC 8058).

The link in an email's `List-Unsubscribe` header carries a signed token naming the user
and the subscription. A GET only shows a confirmation page with a button, because mail
scanners and link previews follow links; the change happens on POST, which is what a
mail client sends for one-click unsubscribe (`List-Unsubscribe=One-Click`). The POST
needs no session or CSRF token: the signature is the proof.
"""

from __future__ import annotations

from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications.services.delivery import UNSUBSCRIBE_SALT
from notifications.services.preferences import unsubscribe_apply


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        claims = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "GET":
        return render(request, "notifications/unsubscribe.html", {"token": token})
    what = unsubscribe_apply(user_id=claims["u"], subscription_id=claims.get("s"))
    return render(request, "notifications/unsubscribe.html", {"done": True, "what": what})
