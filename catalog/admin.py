"""The steward admin for the registry: organisations, members, the audit log, events.

Stewards are staff users without Django model permissions: what they may see and change
follows their memberships (`OrganizationScopedAdmin`). Superusers see everything.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone

from catalog.api.generations import generation_bump
from catalog.audit import Actor
from catalog.models import (
    STEWARD_ROLES,
    ApiToken,
    AuditEntry,
    DomainEvent,
    EventDelivery,
    Membership,
    Organization,
)
from catalog.selectors import organizations_of, organizations_stewarded_by


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Shows a staff user only the rows of organisations they belong to, and lets them
    change rows only where they are a steward or admin."""

    organization_path = "organization"
    steward_may_add = True
    steward_may_change = True

    def _orgs(self, request, *, stewarded=False):
        user = request.user
        return organizations_stewarded_by(user) if stewarded else organizations_of(user)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.organization_path}__in": self._orgs(request)})

    @staticmethod
    def _roles(request) -> set[str]:
        """The user's roles across organisations, read once per request."""
        if not hasattr(request, "_catalog_roles"):
            request._catalog_roles = set(request.user.memberships.values_list("role", flat=True))
        return request._catalog_roles

    def has_module_permission(self, request):
        user = request.user
        return (
            user.is_active and user.is_staff and (user.is_superuser or bool(self._roles(request)))
        )

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def _stewards(self, request, obj) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(self._roles(request) & set(STEWARD_ROLES))
        org = obj
        for part in self.organization_path.split("__"):
            org = getattr(org, part)
        return self._orgs(request, stewarded=True).filter(pk=org.pk).exists()

    def has_add_permission(self, request):
        return self.steward_may_add and self._stewards(request, None)

    def has_change_permission(self, request, obj=None):
        return self.steward_may_change and self._stewards(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    # Changes made here (a dataset's visibility, a membership) change what the API shows:
    # cached answers must miss after commit (catalog/api/generations.py).
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        generation_bump()

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        generation_bump()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        generation_bump()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        generation_bump()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            kwargs["queryset"] = self._orgs(request, stewarded=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyAdmin(OrganizationScopedAdmin):
    """Rows only the services write: visible, never editable here."""

    steward_may_add = False
    steward_may_change = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    organization_path = "pk"
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=self._orgs(request))

    def has_add_permission(self, request):
        return request.user.is_superuser

    def _stewards(self, request, obj) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(self._roles(request) & set(STEWARD_ROLES))
        return self._orgs(request, stewarded=True).filter(pk=obj.pk).exists()


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "user__email", "organization__slug"]
    list_select_related = ["user", "organization"]
    autocomplete_fields = ["user"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "actor_name",
        "action",
        "object_repr",
        "organization",
        "via",
        "ip_address",
    ]
    list_filter = ["action", "via", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["actor_name", "object_repr", "object_id", "action"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    # Entries hold addresses and token prefixes: stewards and admins of the organisation
    # read them, viewers do not; entries of no organisation are for superusers only.
    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(organization__in=self._orgs(request, stewarded=True))

    def has_module_permission(self, request):
        return super().has_module_permission(request) and (
            request.user.is_superuser or bool(self._roles(request) & set(STEWARD_ROLES))
        )


class EventDeliveryInline(admin.TabularInline):
    model = EventDelivery
    extra = 0
    can_delete = False
    fields = ["handler", "attempts", "delivered_at", "failed_at", "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(DomainEvent)
class DomainEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "topic", "organization", "created_at"]
    list_filter = ["topic", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["topic"]
    list_select_related = ["organization"]
    inlines = [EventDeliveryInline]
    show_full_result_count = False


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Stewards see and revoke the API tokens of their organisations' members and the
    device tokens of their datasets; the secret is never stored, so never shown."""

    list_display = [
        "name",
        "owner",
        "kind",
        "scope_list",
        "dataset_path",
        "prefix_shown",
        "created_at",
        "expires_at",
        "last_used_at",
        "state",
    ]
    list_filter = ["kind", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username", "dataset__name"]
    list_select_related = ["user", "dataset__organization"]
    fields = [*list_display[:-1], "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]
    show_full_result_count = False

    def has_module_permission(self, request):
        user = request.user
        return (
            user.is_active
            and user.is_staff
            and (user.is_superuser or bool(self._roles(request) & set(STEWARD_ROLES)))
        )

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        stewarded = organizations_stewarded_by(request.user)
        members = Membership.objects.filter(organization__in=stewarded).values("user_id")
        return queryset.filter(
            Q(user_id__in=members) | Q(dataset__organization__in=stewarded)
        ).distinct()

    def get_actions(self, request):
        # The list is read-only, but revoking is the stewards' (scoped by the queryset).
        actions = super().get_actions(request)
        return actions if self.has_module_permission(request) else {}

    @admin.display(description="user", ordering="user__username")
    def owner(self, obj):
        return obj.user.get_username()

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="dataset")
    def dataset_path(self, obj):
        return f"{obj.dataset.organization.slug}: {obj.dataset.path}" if obj.dataset_id else "—"

    @admin.display(description="starts with", ordering="prefix")
    def prefix_shown(self, obj):
        return f"{obj.prefix}…"

    @admin.display(description="state")
    def state(self, obj):
        if obj.revoked_at:
            return "revoked"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        return "live"

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        from catalog.tokens import token_revoke

        actor = Actor.from_request(request, via="admin")
        revoked = [
            token_revoke(token=token, actor=actor).name
            for token in queryset.filter(revoked_at__isnull=True)
        ]
        if revoked:
            self.message_user(request, f"Revoked: {', '.join(revoked)}.", messages.SUCCESS)
        else:
            self.message_user(request, "Those tokens were revoked already.", messages.WARNING)
