"""The pages notifications serves: one-click unsubscribe, the subscribe button of the
dataset page's panel, and the subscriber's own pages (subscriptions, preferences,
webhook endpoints, inbox), which the header links to through `catalog.registry`.

One-click unsubscribe (RFC 8058).

The link in an email's `List-Unsubscribe` header carries a signed token naming the user
and the subscription. A GET only shows a confirmation page with a button, because mail
scanners and link previews follow links; the change happens on POST, which is what a
mail client sends for one-click unsubscribe (`List-Unsubscribe=One-Click`). The POST
needs no session or CSRF token: the signature is the proof.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.exceptions import DomainError, InvalidInput, NotFound
from catalog.selectors import datasets_visible_to
from notifications import selectors
from notifications.forms import (
    PreferenceForm,
    SubscriptionForm,
    WebhookEndpointForm,
    form_error_from,
)
from notifications.models import DELIVERY_FINISHED, Delivery, Subscription, WebhookEndpoint
from notifications.services import (
    deliveries_replay,
    preference_get,
    preference_update,
    subscription_create,
    subscription_update,
    webhook_endpoint_create,
    webhook_endpoint_rotate,
    webhook_endpoint_test,
    webhook_endpoint_update,
)
from notifications.services.delivery import UNSUBSCRIBE_SALT
from notifications.services.preferences import (
    PREFERENCE_FIELDS,
    email_confirm_claims,
    inbox_mark_read,
    preference_email_confirm,
    unsubscribe_apply,
)


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


# --- The subscriber's own pages -----------------------------------------------------------
# Each view parses a form, calls a service or a selector, and renders or redirects (POST,
# redirect, GET), except where a secret is shown: that answer is the only time it appears.

INBOX_PAGE_SIZE = 25


def _subscription_form_page(request, form, *, subscription=None, status=200):
    return render(
        request,
        "notifications/subscription_form.html",
        {"form": form, "subscription": subscription},
        status=status,
    )


@never_cache
@login_required
@require_GET
def subscriptions(request: HttpRequest) -> HttpResponse:
    """The viewer's subscriptions, active first."""
    return render(
        request,
        "notifications/subscriptions.html",
        {"subscriptions": list(selectors.subscriptions_of(request.user))},
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def subscription_new(request: HttpRequest) -> HttpResponse:
    """A new subscription to a dataset the viewer may see (`?dataset=<id>` preselects it)
    or to a pattern."""
    datasets = list(selectors.subscribable_datasets(request.user))
    initial = {"types": DEFAULT_TYPES, "dataset": request.GET.get("dataset", "")}
    form = SubscriptionForm(request.POST or None, datasets=datasets, initial=initial)
    if request.method == "POST" and form.is_valid():
        chosen = form.cleaned_data["dataset"]
        dataset = next((d for d in datasets if str(d.pk) == chosen), None)
        try:
            sub = subscription_create(
                user=request.user,
                dataset=dataset,
                pattern=form.cleaned_data["pattern"],
                **form.service_arguments(),
            )
        except InvalidInput as exc:
            form_error_from(form, exc)
        else:
            messages.success(request, f"You are subscribed to {sub.target}.")
            return redirect("notifications:subscriptions")
    status = 400 if request.method == "POST" else 200
    return _subscription_form_page(request, form, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def subscription_edit(request: HttpRequest, subscription_id: int) -> HttpResponse:
    sub = get_object_or_404(selectors.subscriptions_of(request.user), pk=subscription_id)
    initial = {
        "types": sub.types,
        "channels": sub.channels,
        "frequency": sub.frequency,
        "threshold": sub.threshold,
    }
    form = SubscriptionForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            subscription_update(subscription=sub, is_active=True, **form.service_arguments())
        except InvalidInput as exc:
            form_error_from(form, exc)
        else:
            messages.success(request, f"Your subscription to {sub.target} is saved.")
            return redirect("notifications:subscriptions")
    status = 400 if request.method == "POST" else 200
    return _subscription_form_page(request, form, subscription=sub, status=status)


@login_required
@require_POST
def subscription_delete(request: HttpRequest, subscription_id: int) -> HttpResponse:
    sub = get_object_or_404(selectors.subscriptions_of(request.user), pk=subscription_id)
    target = sub.target
    sub.delete()
    messages.success(request, f"You are no longer subscribed to {target}.")
    return redirect("notifications:subscriptions")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    """Channels, addresses, default frequency, quiet hours in a time zone, digest time."""
    pref = preference_get(user=request.user)
    initial = {name: getattr(pref, name) for name in PREFERENCE_FIELDS}
    form = PreferenceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            preference_update(user=request.user, **form.cleaned_data)
        except InvalidInput as exc:
            form_error_from(form, exc)
        else:
            messages.success(request, "Your notification preferences are saved.")
            return redirect("notifications:preferences")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "notifications/preferences.html",
        {"form": form, "account_email": request.user.email, "pref": pref},
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The link mailed to a new notification address. Opening it changes nothing (mail
    scanners open links); the button confirms. No sign-in needed: the signed link is
    the proof that its mailbox asked."""
    template = "notifications/email_confirm.html"
    try:
        claims = email_confirm_claims(token)
        if request.method == "POST":
            pref = preference_email_confirm(token=token)
            return render(request, template, {"done": True, "address": pref.email})
    except DomainError as exc:
        status = 404 if isinstance(exc, NotFound) else 400
        return render(request, template, {"error": exc.message}, status=status)
    return render(request, template, {"address": claims["e"]})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def webhooks(request: HttpRequest) -> HttpResponse:
    """The viewer's webhook endpoints; adding one shows its secret on this answer only."""
    form = WebhookEndpointForm(request.POST or None)
    made = None
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhook_endpoint_create(user=request.user, **form.cleaned_data)
        except InvalidInput as exc:
            form_error_from(form, exc)
        else:
            made = {"endpoint": endpoint, "secret": secret}
            form = WebhookEndpointForm()
    status = 400 if request.method == "POST" and made is None else 200
    return render(
        request,
        "notifications/webhooks.html",
        {
            "form": form,
            "made": made,
            "endpoints": list(selectors.webhook_endpoints_of(request.user)),
        },
        status=status,
    )


def _endpoint_or_404(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    return get_object_or_404(selectors.webhook_endpoints_of(request.user), pk=endpoint_id)


def _endpoint_page(request, endpoint: WebhookEndpoint, *, secret: str = "") -> HttpResponse:
    return render(
        request,
        "notifications/webhook_detail.html",
        {
            "endpoint": endpoint,
            "secret": secret,
            "deliveries": selectors.endpoint_deliveries(endpoint),
            "finished": DELIVERY_FINISHED,
        },
    )


@never_cache
@login_required
@require_GET
def webhook_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """One endpoint: its state, its recent deliveries, and what can be done with it."""
    return _endpoint_page(request, _endpoint_or_404(request, endpoint_id))


@never_cache
@login_required
@require_POST
def webhook_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """A new secret, shown on this answer only; the old one signs alongside for a while."""
    endpoint, secret = webhook_endpoint_rotate(endpoint=_endpoint_or_404(request, endpoint_id))
    return _endpoint_page(request, endpoint, secret=secret)


@login_required
@require_POST
def webhook_test(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    if endpoint.is_active:
        webhook_endpoint_test(endpoint=endpoint)
        messages.success(
            request, "A test message is on its way; follow it in the deliveries below."
        )
    else:
        messages.error(request, "This endpoint is disabled; enable it to send it anything.")
    return redirect("notifications:webhook", endpoint_id=endpoint.pk)


@login_required
@require_POST
def webhook_toggle(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """Disables an endpoint, or enables it again (which starts a fresh failure count)."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    webhook_endpoint_update(endpoint=endpoint, is_active=not endpoint.is_active)
    state = "enabled" if endpoint.is_active else "disabled"
    messages.success(request, f"The endpoint is {state}.")
    return redirect("notifications:webhook", endpoint_id=endpoint.pk)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    url = endpoint.url
    endpoint.delete()
    messages.success(request, f"The endpoint {url} is deleted; it gets nothing more.")
    return redirect("notifications:webhooks")


@login_required
@require_POST
def webhook_replay(request: HttpRequest, endpoint_id: int, delivery_id: int) -> HttpResponse:
    """Sends one finished delivery again, with the same webhook-id."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    chosen = Delivery.objects.filter(pk=delivery_id, endpoint=endpoint)
    if not chosen.exists():
        raise Http404("No such delivery to this endpoint.")
    if deliveries_replay(deliveries=chosen):
        messages.success(request, "The delivery is sent again, with the same webhook-id.")
    else:
        messages.error(request, "That delivery is still on its way; it cannot be replayed yet.")
    return redirect("notifications:webhook", endpoint_id=endpoint.pk)


@never_cache
@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """The in-app messages, paginated, unread first (`?order=newest` for plain time)."""
    order = request.GET.get("order", "unread")
    if order not in selectors.INBOX_ORDERS:
        order = "unread"
    items = selectors.inbox_ordered(request.user, order=order)
    page = Paginator(items, INBOX_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/inbox.html",
        {"page": page, "order": order, "orders": selectors.INBOX_ORDERS.items()},
    )


def _back_to_inbox(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        target = reverse("notifications:inbox")
    return redirect(target)


@login_required
@require_POST
def inbox_read(request: HttpRequest, item_id: int) -> HttpResponse:
    item = get_object_or_404(selectors.inbox_of(request.user), pk=item_id)
    inbox_mark_read(user=request.user, item_ids=[item.pk])
    return _back_to_inbox(request)


@login_required
@require_POST
def inbox_read_all(request: HttpRequest) -> HttpResponse:
    marked = inbox_mark_read(user=request.user)
    messages.success(request, f"{marked} message{'s' if marked != 1 else ''} marked read.")
    return _back_to_inbox(request)
