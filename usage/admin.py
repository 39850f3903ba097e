"""The steward's usage workplace: three dashboards (dataset health, user activity,
version adoption) as custom admin views, thresholds to edit, and read-only views of
the rollups, segments and anomalies the pipeline writes.

Every dashboard reads the daily rollups only (`usage.selectors`), in a fixed number of
queries, and draws its charts with the project's one chart helper (`catalog.charts`).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path

from catalog import registry
from catalog.admin import OrganizationScopedAdmin, ReadOnlyAdmin
from catalog.charts import chart, chart_from_rows
from usage import selectors
from usage.models import (
    DatasetDay,
    Segment,
    UsageAnomaly,
    UsageThreshold,
    UserSegment,
)

WINDOWS = (7, 30, 90)


def _window(request, default: int = 30) -> int:
    try:
        days = int(request.GET.get("days", default))
    except ValueError:
        return default
    return days if days in WINDOWS else default


@admin.register(DatasetDay)
class DatasetDayAdmin(ReadOnlyAdmin):
    """Daily usage per dataset, and the home of the dashboards' URLs."""

    list_display = [
        "day",
        "dataset",
        "downloads",
        "unique_downloads",
        "investigations",
        "api_calls",
        "exports",
        "unique_users",
        "errors",
        "p95_ms",
    ]
    list_filter = ["day", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["dataset__name", "dataset__title"]
    list_select_related = ["dataset__organization"]
    date_hierarchy = "day"
    show_full_result_count = False

    def get_urls(self):
        views = [
            ("health/", self.health_view, "usage_health"),
            ("activity/", self.activity_view, "usage_user_activity"),
            ("adoption/", self.adoption_index_view, "usage_version_adoption_index"),
            ("adoption/<int:dataset_id>/", self.adoption_view, "usage_version_adoption"),
        ]
        return [
            path(route, self.admin_site.admin_view(view), name=name) for route, view, name in views
        ] + super().get_urls()

    def _context(self, request, title: str, **extra) -> dict:
        # Usage is for stewards: members who only read see no dashboards.
        if not self.has_view_permission(request) or not self._stewards(request, None):
            raise Http404("No such page.")
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "windows": WINDOWS,
            **extra,
        }

    # --- Dataset health ----------------------------------------------------------------

    def health_view(self, request):
        context = self._context(request, "Dataset health")
        datasets = selectors.stewarded_datasets(request.user).order_by(
            "organization__slug", "layer", "name"
        )
        search = request.GET.get("q", "").strip()[:100]
        if search:
            datasets = datasets.filter(name__icontains=search)
        datasets = list(datasets)
        rows = selectors.dataset_health_rows(datasets=datasets)
        if request.GET.get("stale") == "1":
            rows = [row for row in rows if row.is_stale]
        contributed = registry.columns_collect(registry.HEALTH_DASHBOARD, [r.dataset for r in rows])
        end = selectors.today()
        start = end - timedelta(days=29)
        daily = selectors.daily_totals(user=request.user, start=start, end=end)
        labels = selectors.days_between(start, end)
        worst = sorted(rows, key=lambda r: (-r.error_rate, r.dataset.pk))[:10]
        context.update(
            rows=[(row, contributed.row(row.dataset)) for row in rows],
            columns=contributed.columns,
            search=search,
            stale_only=request.GET.get("stale") == "1",
            stale_count=sum(row.is_stale for row in rows),
            charts=[
                chart_from_rows(
                    daily,
                    x="day",
                    y=["downloads", "api_calls"],
                    labels=labels,
                    title="Downloads and API calls per day",
                    empty_text="No traffic in the last 30 days.",
                ),
                chart_from_rows(
                    daily,
                    x="day",
                    y=["errors"],
                    labels=labels,
                    kind="bar",
                    title="Errors per day",
                    empty_text="No errors in the last 30 days.",
                ),
                chart(
                    title="Downloads, last 30 days, by dataset",
                    labels=[r.dataset.path for r in rows if r.downloads_30d][:15],
                    series={"downloads": [r.downloads_30d for r in rows if r.downloads_30d][:15]},
                    kind="bar",
                    empty_text="No downloads in the last 30 days.",
                ),
                chart(
                    title="p95 response ms, last 7 days (slowest datasets)",
                    labels=[r.dataset.path for r in worst],
                    series={"p95 ms": [r.p95_ms_7d for r in worst]},
                    kind="bar",
                    empty_text="No API calls in the last 7 days.",
                ),
            ],
        )
        return TemplateResponse(request, "admin/usage/health.html", context)

    # --- User activity -----------------------------------------------------------------

    def activity_view(self, request):
        days = _window(request, 30)
        context = self._context(request, "User activity", days=days)
        end = selectors.today()
        start = end - timedelta(days=days - 1)
        labels = selectors.days_between(start, end)
        latest = selectors.segments_latest(user=request.user)
        countries = selectors.countries(user=request.user, start=start, end=end)
        segments = [(Segment(key).label, value) for key, value in latest.items()]
        context.update(
            top_users=selectors.top_users(user=request.user, start=start, end=end),
            segments=segments,
            countries=countries,
            charts=[
                chart_from_rows(
                    [
                        {**row, "segment": Segment(row["segment"]).label}
                        for row in selectors.segments_over_time(
                            user=request.user, start=start, end=end
                        )
                    ],
                    x="day",
                    y="users",
                    group_by="segment",
                    labels=labels,
                    title="Users per segment",
                    stacked=True,
                    empty_text="No segments computed yet (they are computed daily).",
                ),
                chart(
                    title="Segments today",
                    labels=[label for label, _ in segments],
                    series={"users": [value for _, value in segments]},
                    kind="doughnut",
                    empty_text="No segments computed yet.",
                ),
                chart_from_rows(
                    selectors.sessions_per_day(user=request.user, start=start, end=end),
                    x="day",
                    y=["sessions"],
                    labels=labels,
                    kind="bar",
                    title="Sessions per day",
                    empty_text="No sessions yet.",
                ),
                chart(
                    title="Requests by country",
                    labels=[row["country"] for row in countries[:15]],
                    series={"requests": [row["events"] for row in countries[:15]]},
                    kind="bar",
                    empty_text="No requests with a known country yet.",
                ),
            ],
        )
        return TemplateResponse(request, "admin/usage/activity.html", context)

    # --- Version adoption --------------------------------------------------------------

    def adoption_index_view(self, request):
        context = self._context(request, "Version adoption")
        datasets = list(
            selectors.stewarded_datasets(request.user).order_by(
                "organization__slug", "layer", "name"
            )
        )
        downloads = selectors.downloads_30d(datasets)
        context["datasets"] = [(d, downloads.get(d.pk, 0)) for d in datasets]
        return TemplateResponse(request, "admin/usage/adoption_index.html", context)

    def adoption_view(self, request, dataset_id: int):
        dataset = selectors.stewarded_datasets(request.user).filter(pk=dataset_id).first()
        if dataset is None:
            raise Http404("No such dataset.")
        days = _window(request, 90)
        context = self._context(request, f"Version adoption: {dataset.path}", days=days)
        end = selectors.today()
        start = end - timedelta(days=days - 1)
        adoption = selectors.version_adoption(dataset=dataset, start=start, end=end)
        shares = {v: s for v, s in adoption["shares"].items() if any(s)}
        context.update(
            dataset=dataset,
            versions=adoption["versions"],
            charts=[
                chart(
                    title="Share of reads per version (%)",
                    labels=adoption["days"],
                    series=shares,
                    stacked=True,
                    y_label="% of reads",
                    empty_text="Nobody read this dataset in the window.",
                ),
                chart(
                    title="Reads per version",
                    labels=[v["version"] for v in adoption["versions"]],
                    series={"reads": [v["reads"] for v in adoption["versions"]]},
                    kind="bar",
                    empty_text="Nobody read this dataset in the window.",
                ),
            ],
        )
        return TemplateResponse(request, "admin/usage/adoption.html", context)


@admin.register(UsageThreshold)
class UsageThresholdAdmin(OrganizationScopedAdmin):
    organization_path = "dataset__organization"
    list_display = ["dataset", "metric", "direction", "value", "is_crossed", "crossed_on"]
    list_filter = ["metric", "direction", "is_crossed"]
    search_fields = ["dataset__name"]
    list_select_related = ["dataset__organization"]
    readonly_fields = ["is_crossed", "crossed_on", "last_checked_on", "created_at"]
    autocomplete_fields = ["dataset"]

    def has_delete_permission(self, request, obj=None):
        return self._stewards(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "dataset" and not request.user.is_superuser:
            kwargs["queryset"] = selectors.stewarded_datasets(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(UsageAnomaly)
class UsageAnomalyAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = ["day", "dataset", "metric", "value", "mean", "stdev"]
    list_filter = ["metric", "day"]
    search_fields = ["dataset__name"]
    list_select_related = ["dataset__organization"]
    date_hierarchy = "day"


@admin.register(UserSegment)
class UserSegmentAdmin(ReadOnlyAdmin):
    list_display = ["day", "user", "segment", "active_days_30", "active_days_90", "events_30"]
    list_filter = ["segment", "day"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    date_hierarchy = "day"
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        return queryset.filter(selectors.users_visible_q(request.user))
