"""Parts of pages that several apps fill in.

The dataset page, the admin home and the health dashboard show facts that belong to
different apps: usage figures, replication status, subscriber counts, a subscribe form.
`catalog` may import none of those apps, and they may not import each other, so each app
contributes what it knows here, in its `AppConfig.ready()`, one line per part, as it does
for event handlers:

    registry.panel_register(registry.DATASET_PAGE, Panel(
        name="replication", title="Replicas", template="replication/panel.html",
        context=selectors.dataset_panel_context,
    ))
    registry.column_register(registry.HEALTH_DASHBOARD, Column(
        name="subscribers", title="Subscribers", values=selectors.subscriber_counts,
    ))

A page renders whatever is registered for its place; an app that is absent adds nothing.

- A **panel** is a template and a function giving its context for one dataset (or for no
  dataset, on the admin home). The function returns `None` to leave the panel out (for
  example when the viewer may not see it).
- A **column** is one fact per dataset for a list of datasets. Its function takes the
  whole list and answers `{dataset id: value}` in a fixed number of queries, so a page's
  query count does not grow with the catalog.

The subscriber pages' header is filled the same way, so that an app's own pages (the
notifications app's subscriptions, preferences and inbox, say) appear in the navigation
without the page layout knowing them:

    registry.nav_register(NavItem(
        name="inbox", title="Inbox", url_name="notifications:inbox", order=40,
    ))
    registry.badge_register(Badge(
        name="unread", template="notifications/unread_badge.html",
        context=selectors.unread_badge_context,
    ))

- A **navigation item** is a title and a URL name; `visible(request)` decides whether the
  viewer gets it (by default only signed-in users).
- A **badge** is a small template in the header beside the signed-in user (an unread
  count), rendered from `context(request)`; `None` leaves it out. It is rendered on every
  page, so its function should cost one query at most.

A failing contribution must not take the page down with it: rendering logs the error and
leaves that part out, because one app's bug or outage is no reason to hide the others'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

if TYPE_CHECKING:
    from django.http import HttpRequest

    from catalog.models import Dataset

logger = logging.getLogger(__name__)

# The places a part can go.
DATASET_PAGE = "dataset_page"  # the subscriber's dataset page
DATASET_ADMIN = "dataset_admin"  # the steward's dataset page in the admin
ADMIN_HOME = "admin_home"  # the admin index: summary tiles, dataset is None
HEALTH_DASHBOARD = "health_dashboard"  # the dataset health dashboard's table
CATALOG_LIST = "catalog_list"  # the subscriber's catalog list

PLACES = (DATASET_PAGE, DATASET_ADMIN, ADMIN_HOME, HEALTH_DASHBOARD, CATALOG_LIST)

PanelContext = Callable[["HttpRequest | None", "Dataset | None"], "dict[str, Any] | None"]
ColumnValues = Callable[["Sequence[Dataset]"], "dict[int, Any]"]


@dataclass(frozen=True)
class Panel:
    """A titled part of a page, rendered from `template` with `context(request, dataset)`."""

    name: str
    title: str
    template: str
    context: PanelContext
    order: int = 100


@dataclass(frozen=True)
class Column:
    """One fact per dataset in a list: `values(datasets)` answers `{dataset.pk: value}`."""

    name: str
    title: str
    values: ColumnValues
    order: int = 100


@dataclass(frozen=True)
class RenderedPanel:
    name: str
    title: str
    html: str


_panels: dict[str, dict[str, Panel]] = {place: {} for place in PLACES}
_columns: dict[str, dict[str, Column]] = {place: {} for place in PLACES}


def _check_place(place: str) -> None:
    if place not in PLACES:
        raise ValueError(f"Unknown page place {place!r}; expected one of {', '.join(PLACES)}.")


def panel_register(place: str, panel: Panel) -> None:
    """Adds `panel` to `place`; registering the same name again replaces it."""
    _check_place(place)
    _panels[place][panel.name] = panel


def column_register(place: str, column: Column) -> None:
    """Adds `column` to `place`; registering the same name again replaces it."""
    _check_place(place)
    _columns[place][column.name] = column


def panels_for(place: str) -> list[Panel]:
    _check_place(place)
    return sorted(_panels[place].values(), key=lambda p: (p.order, p.name))


def columns_for(place: str) -> list[Column]:
    _check_place(place)
    return sorted(_columns[place].values(), key=lambda c: (c.order, c.name))


def panels_render(
    place: str, *, request: HttpRequest | None, dataset: Dataset | None = None
) -> list[RenderedPanel]:
    """Renders every panel registered for `place` that has something to show."""
    rendered = []
    for panel in panels_for(place):
        try:
            context = panel.context(request, dataset)
            if context is None:
                continue
            html = render_to_string(panel.template, context, request=request)
        except Exception:
            logger.exception("The %r panel failed on %s; it is left out.", panel.name, place)
            continue
        rendered.append(RenderedPanel(name=panel.name, title=panel.title, html=html))
    return rendered


@dataclass(frozen=True)
class ColumnValuesTable:
    """The registered columns of a place and their values for a list of datasets."""

    columns: list[Column]
    values: dict[str, dict[int, Any]]

    def row(self, dataset: Dataset) -> list[Any]:
        """The values for one dataset, in column order (None where a column has none)."""
        return [self.values[c.name].get(dataset.pk) for c in self.columns]


def columns_collect(place: str, datasets: Sequence[Dataset]) -> ColumnValuesTable:
    """Asks every column registered for `place` for its values over `datasets`."""
    columns = []
    values: dict[str, dict[int, Any]] = {}
    for column in columns_for(place):
        try:
            values[column.name] = dict(column.values(datasets))
        except Exception:
            logger.exception("The %r column failed on %s; it is left out.", column.name, place)
            continue
        columns.append(column)
    return ColumnValuesTable(columns=columns, values=values)


# --- The subscriber pages' header ------------------------------------------------------

NavVisible = Callable[["HttpRequest"], bool]
BadgeContext = Callable[["HttpRequest"], "dict[str, Any] | None"]


def signed_in(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_authenticated", False))


@dataclass(frozen=True)
class NavItem:
    """A link in the header's navigation to the page named `url_name`."""

    name: str
    title: str
    url_name: str
    order: int = 100
    visible: NavVisible = signed_in


@dataclass(frozen=True)
class Badge:
    """A small part of the header (an unread count), from `template` and `context(request)`."""

    name: str
    template: str
    context: BadgeContext
    order: int = 100


@dataclass(frozen=True)
class RenderedNavItem:
    name: str
    title: str
    url: str
    current: bool


_nav: dict[str, NavItem] = {}
_badges: dict[str, Badge] = {}


def nav_register(item: NavItem) -> None:
    """Adds `item` to the header's navigation; registering the same name replaces it."""
    _nav[item.name] = item


def badge_register(badge: Badge) -> None:
    """Adds `badge` to the header; registering the same name again replaces it."""
    _badges[badge.name] = badge


def nav_render(request: HttpRequest) -> list[RenderedNavItem]:
    """The navigation items the viewer may see, in order, the current page's marked."""
    rendered = []
    for item in sorted(_nav.values(), key=lambda i: (i.order, i.name)):
        try:
            if not item.visible(request):
                continue
            url = reverse(item.url_name)
        except NoReverseMatch:
            logger.exception("The %r navigation item names no page; it is left out.", item.name)
            continue
        except Exception:
            logger.exception("The %r navigation item failed; it is left out.", item.name)
            continue
        path = request.path
        current = path == url or (url != "/" and path.startswith(url))
        rendered.append(RenderedNavItem(name=item.name, title=item.title, url=url, current=current))
    return rendered


def badges_render(request: HttpRequest) -> list[RenderedPanel]:
    """Every header badge that has something to show."""
    rendered = []
    for badge in sorted(_badges.values(), key=lambda b: (b.order, b.name)):
        try:
            context = badge.context(request)
            if context is None:
                continue
            html = render_to_string(badge.template, context, request=request)
        except Exception:
            logger.exception("The %r badge failed; it is left out.", badge.name)
            continue
        rendered.append(RenderedPanel(name=badge.name, title=badge.name, html=html))
    return rendered
