"""The steward's replication workplace: regions (superusers change them), rules,
replicas and copy runs (read-only: the pipeline writes them), and the replication
monitor, a dashboard of every dataset in every region with throughput and cost charts.

Rules are saved through `rule_create`/`rule_update`, so the admin refuses exactly what
the API refuses, with the same messages. "Replicate now" is an action on rules and on
datasets (added to versioning's dataset admin here, so versioning knows nothing of it).
"""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from catalog.admin import OrganizationScopedAdmin, ReadOnlyAdmin
from catalog.audit import Actor
from catalog.charts import chart_from_rows
from catalog.exceptions import DomainError
from catalog.models import Dataset
from catalog.selectors import organizations_of
from replication import selectors
from replication.models import (
    RULE_FIELDS,
    CopyRun,
    Region,
    RegionManifest,
    Replica,
    ReplicationRule,
)
from replication.services import (
    region_validate,
    replication_request,
    rule_create,
    rule_run,
    rule_update,
    rule_validate,
    rules_count_datasets,
)


def _orgs(request):
    return None if request.user.is_superuser else organizations_of(request.user)


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    """Regions are infrastructure: every steward sees them, superusers change them."""

    list_display = [
        "code",
        "name",
        "is_primary",
        "is_active",
        "storage",
        "cdn_base_url",
        "storage_price_gb_month",
        "transfer_price_gb",
    ]
    list_filter = ["is_primary", "is_active"]
    search_fields = ["code", "name"]
    fieldsets = [
        (None, {"fields": ["code", "name", "is_primary", "is_active", "cdn_base_url"]}),
        (
            "Storage",
            {
                "fields": [
                    "endpoint_url",
                    "bucket",
                    "s3_region_name",
                    "addressing_style",
                    "access_key_env",
                    "secret_key_env",
                    "local_path",
                ],
                "description": "The primary region is the storage publishing uses; leave "
                "these empty for it. Credentials are the names of environment variables, "
                "read when a copy runs.",
            },
        ),
        ("Prices (USD)", {"fields": ["storage_price_gb_month", "transfer_price_gb"]}),
    ]

    @admin.display(description="storage")
    def storage(self, obj):
        if obj.is_primary:
            return "publishing's storage"
        if obj.local_path:
            return f"folder {obj.local_path}"
        return f"{obj.endpoint_url or 'AWS'} / {obj.bucket}"

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class RegionForm(form):
            def clean(self):
                cleaned = super().clean()
                try:
                    region_validate(self.instance)
                except DomainError as exc:
                    for field, problems in exc.details.items():
                        target = field if field in self.fields else None
                        for problem in problems:
                            self.add_error(target, problem)
                return cleaned

        return RegionForm


class RuleForm(forms.ModelForm):
    class Meta:
        model = ReplicationRule
        fields = ["organization", "regions", *RULE_FIELDS]

    def clean(self):
        cleaned = super().clean()
        organization = cleaned.get("organization") or getattr(self.instance, "organization", None)
        if organization is None:
            return cleaned
        fields = {f: cleaned.get(f) for f in self.Meta.fields if f not in ("organization",)}
        regions = list(fields.pop("regions") or [])
        fields = {k: v for k, v in fields.items() if v is not None}
        try:
            rule_validate(organization=organization, fields=fields, regions=regions)
        except DomainError as exc:
            for field, message in exc.details.items():
                self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(ReplicationRule)
class ReplicationRuleAdmin(OrganizationScopedAdmin):
    form = RuleForm
    list_display = [
        "__str__",
        "organization",
        "pattern",
        "policy",
        "targets",
        "matches",
        "bandwidth_mbps",
        "retention_days",
        "priority",
        "enabled",
        "next_run_at",
    ]
    list_filter = ["policy", "enabled", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "pattern"]
    list_select_related = ["organization"]
    filter_horizontal = ["regions"]
    readonly_fields = ["next_run_at", "last_run_at", "created_by", "created_at", "updated_at"]
    actions = ["run_now"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("regions")

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if cl is not None:
            self._matches = rules_count_datasets(list(cl.result_list))
        return response

    @admin.display(description="targets")
    def targets(self, obj):
        return ", ".join(r.code for r in obj.regions.all()) or "—"

    @admin.display(description="datasets matched")
    def matches(self, obj):
        count = getattr(self, "_matches", {}).get(obj.pk)
        if count is None:
            count = rules_count_datasets([obj])[obj.pk]
        return count if count else "matches nothing"

    def save_model(self, request, obj, form, change):
        actor = Actor.from_request(request, via="admin")
        fields = {f: form.cleaned_data[f] for f in form.Meta.fields if f in form.cleaned_data}
        regions = list(fields.pop("regions"))
        organization = fields.pop("organization", None) or obj.organization
        if change:
            saved = rule_update(rule=obj, actor=actor, regions=regions, **fields)
        else:
            saved = rule_create(organization=organization, regions=regions, actor=actor, **fields)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        # The service set the regions; the form's m2m would set them again, harmlessly.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.action(description="Replicate now: copy the current versions the rule matches")
    def run_now(self, request, queryset):
        actor = Actor.from_request(request, via="admin")
        total = 0
        for rule in queryset:
            try:
                total += len(rule_run(rule=rule, actor=actor))
            except DomainError as exc:
                self.message_user(request, f"{rule}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{total} copies queued.", messages.SUCCESS)


@admin.register(Replica)
class ReplicaAdmin(ReadOnlyAdmin):
    organization_path = "version__dataset__organization"
    list_display = [
        "version",
        "region",
        "status",
        "progress",
        "attempts",
        "method",
        "queued_at",
        "verified_at",
        "short_error",
    ]
    list_filter = ["status", "region", "method"]
    search_fields = ["version__dataset__name", "key", "last_error"]
    list_select_related = ["version__dataset", "region"]
    readonly_fields = [f.name for f in Replica._meta.fields]
    date_hierarchy = "queued_at"
    show_full_result_count = False
    change_list_template = "admin/replication/replica/change_list.html"

    @admin.display(description="copied")
    def progress(self, obj):
        return f"{filesizeformat(obj.bytes_copied)} of {filesizeformat(obj.size_bytes)}"

    @admin.display(description="last error")
    def short_error(self, obj):
        return obj.last_error[:120]

    def get_urls(self):
        views = [
            path(
                "monitor/",
                self.admin_site.admin_view(self.monitor_view),
                name="replication_monitor",
            ),
            path(
                "costs/",
                self.admin_site.admin_view(self.costs_view),
                name="replication_costs",
            ),
        ]
        return [*views, *super().get_urls()]

    def costs_view(self, request):
        """The monthly cost report per dataset and region (`?month=YYYY-MM`)."""
        this_month = timezone.localdate().replace(day=1)
        try:
            month = date.fromisoformat(f"{request.GET['month']}-01")
        except (KeyError, ValueError):
            month = this_month
        rows = selectors.cost_report(organizations=_orgs(request), month=month)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Replication cost, {month:%B %Y}",
            "rows": rows,
            "month": month,
            "previous": (month - timedelta(days=1)).replace(day=1),
            "next": (month + timedelta(days=32)).replace(day=1) if month < this_month else None,
            "total": sum(r.total_cost for r in rows),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/replication/costs.html", context)

    def monitor_view(self, request):
        """Seed 000's v_replication_monitor: every dataset in every region, lag and
        failures, this month's bytes and cost; throughput and cost per region."""
        orgs = _orgs(request)
        axis, daily = selectors.daily_series(organizations=orgs)
        context = {
            **self.admin_site.each_context(request),
            "title": "Replication monitor",
            "rows": selectors.monitor_rows(organizations=orgs),
            "regions": list(Region.objects.filter(is_primary=False).order_by("code")),
            "lags": selectors.region_lags(organizations=orgs),
            "within_target": selectors.versions_within_target_share(organizations=orgs),
            "throughput_chart": chart_from_rows(
                daily,
                x="day",
                y="throughput_mbs",
                group_by="region",
                labels=axis,
                title="Copy throughput per region (MB/s)",
                y_label="MB/s",
                empty_text="No copies in the last 30 days.",
            ),
            "cost_chart": chart_from_rows(
                daily,
                x="day",
                y="cost_usd",
                group_by="region",
                labels=axis,
                kind="bar",
                stacked=True,
                title="Replication cost per region (USD per day)",
                y_label="USD",
                empty_text="No replication cost in the last 30 days.",
            ),
            "month": timezone.localdate().replace(day=1),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/replication/monitor.html", context)


@admin.register(CopyRun)
class CopyRunAdmin(ReadOnlyAdmin):
    organization_path = "replica__version__dataset__organization"
    list_display = [
        "replica",
        "attempt",
        "method",
        "outcome",
        "size",
        "rate",
        "duration_seconds",
        "started_at",
        "worker",
    ]
    list_filter = ["outcome", "method", "target_region"]
    search_fields = ["replica__version__dataset__name", "error", "worker"]
    list_select_related = ["replica__version__dataset", "replica__region"]
    readonly_fields = [f.name for f in CopyRun._meta.fields]
    date_hierarchy = "started_at"
    show_full_result_count = False

    @admin.display(description="bytes")
    def size(self, obj):
        return filesizeformat(obj.bytes_transferred)

    @admin.display(description="throughput")
    def rate(self, obj):
        if not obj.throughput_bps:
            return "—"
        return f"{obj.throughput_bps * 8 / 1e6:,.1f} Mbps"


@admin.register(RegionManifest)
class RegionManifestAdmin(ReadOnlyAdmin):
    list_display = ["organization", "region", "generated_at", "written_at", "datasets", "sha256"]
    list_filter = ["region", ("organization", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organization", "region"]
    readonly_fields = ["organization", "region", "generated_at", "written_at", "sha256", "body"]
    show_full_result_count = False

    @admin.display(description="datasets")
    def datasets(self, obj):
        return obj.body.get("total_datasets", 0)


@admin.action(description="Replicate now to every target of the matching rules")
def replicate_datasets(modeladmin, request, queryset):
    actor = Actor.from_request(request, via="admin")
    total = 0
    for dataset in queryset.select_related("organization"):
        try:
            total += len(replication_request(dataset=dataset, regions=None, actor=actor))
        except DomainError as exc:
            modeladmin.message_user(request, f"{dataset.path}: {exc.message}", messages.ERROR)
    modeladmin.message_user(request, f"{total} copies queued.", messages.SUCCESS)


def _add_dataset_action() -> None:
    dataset_admin = admin.site._registry.get(Dataset)
    if dataset_admin is not None and replicate_datasets not in (dataset_admin.actions or []):
        dataset_admin.actions = [*(dataset_admin.actions or []), replicate_datasets]


_add_dataset_action()
