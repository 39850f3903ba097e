"""The two small pages notifications serves itself: one-click unsubscribe, and the
subscribe button of the dataset page's panel.

One-click unsubscribe (RFC 8058).

The link in an email's `List-Unsubscribe` header carries a signed token naming the user
and the subscription. A GET only shows a confirmation page with a button, because mail
scanners and link previews follow links; the change happens on POST, which is what a
mail client sends for one-click unsubscribe (`List-Unsubscribe=One-Click`). The POST
needs no session or CSRF token: the signature is the proof.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from catalog.selectors import datasets_visible_to
from notifications.models import Subscription
from notifications.services.delivery import UNSUBSCRIBE_SALT
from notifications.services.preferences import subscription_create, unsubscribe_apply


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


DEFAULT_TYPES = [
    "new_version",
    "schema_changed",
    "quality_failed",
    "version_deprecated",
    "version_rolled_back",
]


@login_required
@require_http_methods(["POST"])
def dataset_subscription(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Subscribes the signed-in user to a dataset they may see (the usual types, their
    preferred channels), or ends that subscription with `action=unsubscribe`; then back
    to the page they came from. A dataset they may not see is a 404."""
    dataset = datasets_visible_to(request.user).filter(pk=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    mine = Subscription.objects.filter(user=request.user, dataset=dataset, is_active=True)
    if request.POST.get("action") == "unsubscribe":
        mine.update(is_active=False)
    elif not mine.exists():
        subscription_create(user=request.user, dataset=dataset, types=DEFAULT_TYPES)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = "/"
    return redirect(target)
