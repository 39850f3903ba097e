"""The subscriber pages. Each view parses its input, calls a selector or a service, and
renders; visibility follows `catalog.selectors.datasets_visible_to`, so a dataset the
viewer may not see answers 404 exactly like one that does not exist."""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog import registry
from catalog.api.throttling import SignedUrlRateThrottle
from catalog.audit import Actor
from catalog.exceptions import DomainError, Forbidden, InvalidInput, NotFound
from catalog.invitations import invitation_accept, invitation_pending
from catalog.models import Dataset, TokenKind
from catalog.selectors import organizations_stewarded_by, user_can_steward
from catalog.storage import get_object_store
from catalog.tokens import token_create, token_revoke, tokens_of
from portal import selectors
from portal.forms import CatalogFilterForm, DeviceTokenForm, InvitationAcceptForm, TokenForm
from versioning.api.filters import DatasetFilterSet
from versioning.models import VersionStatus
from versioning.services import version_download_check

CATALOG_PAGE_SIZE = 20
DOWNLOAD_TTL = 3600


@require_GET
def catalog(request):
    """The datasets the viewer may see: search, filters, freshness, paginated."""
    facets = selectors.catalog_facets(request.user)
    form = CatalogFilterForm(
        request.GET or None, organizations=facets["organizations"], tags=facets["tags"]
    )
    # Filter exactly as the API's `GET /datasets/` does.
    filterset = DatasetFilterSet(
        data={
            k: v for k, v in request.GET.items() if k in ("search", "organization", "layer", "tag")
        },
        queryset=selectors.catalog_datasets(request.user),
    )
    # A filter naming no organisation, layer or tag the viewer has matches nothing: say so.
    invalid = form.is_bound and not form.is_valid()
    datasets = filterset.qs.none() if invalid or not filterset.is_valid() else filterset.qs
    page = Paginator(datasets, CATALOG_PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    rows = list(page.object_list)
    extra = registry.columns_collect(registry.CATALOG_LIST, rows)
    items = [
        {
            "dataset": d,
            "freshness": selectors.freshness(d, d.last_published_at, now=now),
            "extra": list(zip(extra.columns, extra.row(d), strict=True)),
        }
        for d in rows
    ]
    query = request.GET.copy()
    query.pop("page", None)
    filtered = any(request.GET.get(k) for k in ("search", "organization", "layer", "tag"))
    return render(
        request,
        "portal/catalog.html",
        {
            "form": form,
            "page": page,
            "items": items,
            "query": query.urlencode(),
            "filtered": filtered,
        },
        status=400 if invalid else 200,
    )


def _message(request, title: str, text: str, *, status: int):
    """A page that says one thing: why something cannot be done, and the way back."""
    return render(request, "portal/message.html", {"title": title, "text": text}, status=status)


def _dataset_or_404(request, org: str, layer: str, name: str) -> Dataset:
    try:
        return selectors.dataset_for_page(user=request.user, org=org, layer=layer, name=name)
    except NotFound as exc:
        raise Http404(exc.message) from None


@require_GET
def dataset_detail(request, org: str, layer: str, name: str):
    """All a subscriber wants to know about one dataset, plus the parts other apps add."""
    dataset = _dataset_or_404(request, org, layer, name)
    page = selectors.dataset_page(user=request.user, dataset=dataset)
    current = page.current
    preview = selectors.version_preview(version=current) if current is not None else None
    deprecated = [v for v in page.versions if v.status == VersionStatus.DEPRECATED]
    return render(
        request,
        "portal/dataset.html",
        {
            "dataset": dataset,
            "page": page,
            "current": current,
            "preview": preview,
            "deprecated": deprecated,
            "panels": registry.panels_render(
                registry.DATASET_PAGE, request=request, dataset=dataset
            ),
        },
    )


@require_GET
def dataset_download(request, org: str, layer: str, name: str):
    """Redirects to a signed URL of the current version (or `?version=`), counted against
    the same per-user budget as the API's signed URLs."""
    dataset = _dataset_or_404(request, org, layer, name)
    wanted = request.GET.get("version", "")
    versions = dataset.versions.all()
    version = (
        versions.filter(version=wanted).first()
        if wanted
        else versions.filter(is_current=True).first()
    )
    if version is not None and version.status == VersionStatus.DRAFT:
        # A draft is for the organisation's stewards; to anyone else it does not exist.
        steward = request.user.is_authenticated and (
            request.user.is_superuser or user_can_steward(request.user, dataset.organization)
        )
        version = version if steward else None
    if version is None:
        raise Http404(
            f"{dataset.path} has no version {wanted!r}." if wanted else "Nothing published yet."
        )
    version.dataset = dataset
    try:
        version_download_check(version=version, user=request.user)
    except Forbidden as exc:
        return _message(request, "Not available", exc.message, status=403)
    throttle = SignedUrlRateThrottle()
    if not throttle.allow_request(request, None):
        wait = math.ceil(throttle.wait())
        response = _message(
            request,
            "Too many downloads",
            f"You asked for many download links in a short time. Try again in {wait} seconds.",
            status=429,
        )
        response["Retry-After"] = str(wait)
        return response
    try:
        signed = get_object_store().signed_url(
            version.key,
            ttl=DOWNLOAD_TTL,
            filename=version.key.rsplit("/", 1)[-1],
            version=version.version,
        )
    except DomainError as exc:
        response = _message(request, "Try again shortly", exc.message, status=503)
        response["Retry-After"] = "30"
        return response
    response = redirect(signed.url)
    response["Cache-Control"] = "no-store"
    return response


# --- API tokens -----------------------------------------------------------------------


def _stewarded_datasets(user):
    return (
        Dataset.objects.filter(organization__in=organizations_stewarded_by(user))
        .select_related("organization")
        .order_by("organization__slug", "layer", "name")
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """The viewer's tokens; making one shows its secret on this answer only."""
    user = request.user
    stewarded = _stewarded_datasets(user)
    may_make_devices = user.is_superuser or organizations_stewarded_by(user).exists()
    posted = request.POST if request.method == "POST" else None
    device = request.POST.get("kind") == "device"
    form = TokenForm(None if device else posted)
    device_form = DeviceTokenForm(posted if device else None, datasets=stewarded)
    made = None
    if posted is not None:
        chosen = device_form if device else form
        if device and not may_make_devices:
            chosen.add_error(None, "Only stewards make device tokens.")
        elif chosen.is_valid():
            try:
                token, secret = token_create(
                    user=user,
                    actor=Actor.from_request(request, via="web"),
                    **chosen.token_arguments(),
                )
            except DomainError as exc:
                chosen.add_error(None, exc.message)
            else:
                made = {"token": token, "secret": secret}
                form, device_form = TokenForm(), DeviceTokenForm(datasets=stewarded)
    invalid = request.method == "POST" and made is None
    now = timezone.now()
    listed = list(tokens_of(user)[:200])
    return render(
        request,
        "portal/tokens.html",
        {
            "form": form,
            "device_form": device_form,
            "may_make_devices": may_make_devices,
            "made": made,
            "tokens": listed,
            "now": now,
            "device_kind": TokenKind.DEVICE,
        },
        status=400 if invalid else 200,
    )


@login_required
@require_POST
def token_revoke_view(request, token_id: int):
    token = get_object_or_404(tokens_of(request.user), pk=token_id)
    token_revoke(token=token, actor=Actor.from_request(request, via="web"))
    messages.success(request, f"The token “{token.name}” is revoked; it stopped working now.")
    return redirect("portal:tokens")


# --- Invitations ----------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def invitation(request, secret: str):
    """Accepting an invitation: a new person chooses a username and password; someone
    signed in joins with their account."""
    try:
        pending = invitation_pending(secret=secret)
    except NotFound as exc:
        return _message(request, "Invitation", exc.message, status=404)
    signed_in = request.user.is_authenticated
    form = None if signed_in else InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and (signed_in or form.is_valid()):
        actor = Actor.from_request(request, via="web")
        try:
            if signed_in:
                user = invitation_accept(secret=secret, actor=actor, user=request.user)
            else:
                user = invitation_accept(
                    secret=secret,
                    actor=actor,
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password1"],
                )
        except InvalidInput as exc:
            field = exc.details.get("field")
            if form is not None and field in ("username", "password"):
                form.add_error("username" if field == "username" else "password1", exc.message)
            elif form is not None:
                form.add_error(None, exc.message)
            else:
                messages.error(request, exc.message)
        except NotFound as exc:
            return _message(request, "Invitation", exc.message, status=404)
        else:
            if not signed_in:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                f"Welcome to {pending.organization.name}: you are a "
                f"{pending.get_role_display().lower()}.",
            )
            return redirect("portal:catalog")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "portal/invitation.html",
        {"invitation": pending, "form": form, "signed_in": signed_in},
        status=status,
    )
