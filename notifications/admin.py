"""The stewards' notifications workplace: templates with a live preview, the delivery
queue (filters, search, replay), subscriptions and the subscriber count of each dataset.

Deliveries and subscriptions are scoped like everything else in the admin: a steward sees
those about datasets of their organisations. Templates are shared by every organisation;
stewards edit them, and each save is checked (the line of a syntax error is shown).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.urls import path

from catalog.admin import OrganizationScopedAdmin, ReadOnlyAdmin
from catalog.models import DomainEvent
from catalog.selectors import datasets_visible_to, organizations_of
from notifications import rendering, services
from notifications.models import Delivery, InboxItem, Subscription, Template, WebhookEndpoint
from notifications.selectors import subscriber_counts
from notifications.services.fanout import event_enriched

# Which topics can cause each type: the preview uses the newest such event.
_PREVIEW_TOPICS = {
    "dataset_updated": ["version.published"],
    "new_version": ["version.published", "version.promoted"],
    "schema_changed": ["version.published"],
    "quality_failed": ["publish.failed", "dataset.stale"],
    "replication_completed": ["version.replicated"],
    "usage_threshold": ["usage.threshold_crossed"],
    "version_deprecated": ["version.deprecated"],
    "version_rolled_back": ["version.rolled_back"],
    "breaking_change": ["usage.breaking_change_consumers", "version.published"],
}


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = ["notification_type", "channel", "subject", "body", "html"]
        widgets = {
            "subject": forms.TextInput(attrs={"size": 100}),
            "body": forms.Textarea(attrs={"rows": 10, "cols": 100}),
            "html": forms.Textarea(attrs={"rows": 10, "cols": 100}),
        }


class _StewardsOnly(admin.ModelAdmin):
    """Any steward may use it; superusers too."""

    def _is_steward(self, request) -> bool:
        user = request.user
        if user.is_superuser:
            return True
        return (
            user.is_active
            and user.is_staff
            and OrganizationScopedAdmin._roles(request)
            & {
                "admin",
                "steward",
            }
        )

    def has_module_permission(self, request):
        return bool(self._is_steward(request))

    def has_view_permission(self, request, obj=None):
        return bool(self._is_steward(request))

    def has_change_permission(self, request, obj=None):
        return bool(self._is_steward(request))

    def has_add_permission(self, request):
        return bool(self._is_steward(request))

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Template)
class TemplateAdmin(_StewardsOnly):
    form = TemplateForm
    list_display = ["notification_type", "channel", "subject", "updated_at"]
    list_filter = ["notification_type", "channel"]
    search_fields = ["subject", "body"]
    change_form_template = "admin/notifications/template/change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        template = self.get_object(request, object_id)
        extra = {"preview": self.preview(request, template) if template else None}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def preview(self, request, obj: Template) -> dict:
        """The saved template rendered with the newest event of its kind the steward may
        see: {"event", "text"} or {"message"} saying why there is none."""
        events = DomainEvent.objects.filter(
            topic__in=_PREVIEW_TOPICS.get(obj.notification_type, [])
        )
        if not request.user.is_superuser:
            events = events.filter(organization__in=organizations_of(request.user))
        event = events.order_by("-id").first()
        if event is None:
            return {"message": "No event of this kind has happened yet: nothing to preview with."}
        context = rendering.event_context(event_enriched(event), obj.notification_type)
        try:
            text = rendering.render(
                {"subject": obj.subject, "body": obj.body, "html": obj.html}, context
            )
        except Exception as exc:  # noqa: BLE001 - a broken template must not break the page
            return {"message": f"The template fails on event #{event.pk}: {exc}"}
        return {"event": event, "text": text}


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "created_at",
        "notification_type",
        "channel",
        "user",
        "dataset",
        "status",
        "attempts",
        "due_at",
        "short_error",
    ]
    list_filter = [
        "status",
        "channel",
        "notification_type",
        "frequency",
        ("dataset__organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["user__username", "user__email", "key", "message_id", "dataset__name"]
    list_select_related = ["user", "dataset__organization"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["replay"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    @admin.display(description="Last error")
    def short_error(self, obj: Delivery) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    def get_actions(self, request):
        # Replaying is a steward's decision; ReadOnlyAdmin hides actions without change.
        actions = admin.ModelAdmin.get_actions(self, request)
        if not self._stewards(request, None):
            actions.pop("replay", None)
        return actions

    @admin.action(description="Send the selected deliveries again (same message id)")
    def replay(self, request, queryset: QuerySet[Delivery]):
        count = services.deliveries_replay(deliveries=queryset)
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"{count} deliver{'y' if count == 1 else 'ies'} queued again"
            + (f"; {skipped} still on their way were left alone." if skipped else "."),
            messages.SUCCESS if count else messages.WARNING,
        )


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = ["user", "target", "types", "channels", "frequency", "is_active", "created_at"]
    list_filter = [
        "is_active",
        "frequency",
        ("dataset__organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["user__username", "dataset__name", "pattern"]
    list_select_related = ["user", "dataset__organization"]

    def get_urls(self):
        return [
            path(
                "counts/",
                self.admin_site.admin_view(self.counts_view),
                name="notifications_subscription_counts",
            )
        ] + super().get_urls()

    def counts_view(self, request):
        """Subscriber counts of every dataset the steward may see, most followed first."""
        datasets = list(
            datasets_visible_to(request.user).filter(
                organization__in=organizations_of(request.user)
            )
            if not request.user.is_superuser
            else datasets_visible_to(request.user)
        )
        counts = subscriber_counts(datasets)
        rows = sorted(datasets, key=lambda d: (-counts[d.pk], str(d)))
        return TemplateResponse(
            request,
            "admin/notifications/subscriber_counts.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Subscribers per dataset",
                "rows": [(d, counts[d.pk]) for d in rows],
            },
        )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Superusers only: endpoints belong to their users (who manage them in the API)."""

    list_display = ["url", "user", "is_active", "failing_since", "disabled_reason", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "user__username"]
    list_select_related = ["user"]
    readonly_fields = [
        "user",
        "url",
        "failing_since",
        "disabled_at",
        "disabled_reason",
        "previous_expires_at",
    ]
    fields = ["user", "url", "description", "is_active", *readonly_fields[2:]]

    def has_add_permission(self, request):
        # Made by their users through the API, which shows the signing secret once.
        return False


@admin.register(InboxItem)
class InboxItemAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = ["created_at", "user", "notification_type", "title", "read_at"]
    list_filter = ["notification_type", ("dataset__organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "title"]
    list_select_related = ["user", "dataset__organization"]
    show_full_result_count = False
