"""The stewards' invitations in the admin.

It lives here, not in catalog, because an invitation's email links to a page of this
app (the one where the invited person sets a password); catalog knows no pages.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from catalog.admin import OrganizationScopedAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.invitations import invitation_create, invitation_revoke
from catalog.models import Invitation, Organization, Role
from catalog.selectors import organizations_stewarded_by


class InvitationForm(forms.Form):
    email = forms.EmailField()
    organization = forms.ModelChoiceField(queryset=Organization.objects.none())
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def __init__(self, *args, organizations, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations
        if organizations.count() == 1:
            self.fields["organization"].initial = organizations.first()


@admin.register(Invitation)
class InvitationAdmin(OrganizationScopedAdmin):
    list_display = ["email", "organization", "role", "state", "inviter", "created_at", "expires_at"]
    list_filter = ["role", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["email"]
    list_select_related = ["organization", "invited_by", "accepted_by"]
    fields = [
        "email",
        "organization",
        "role",
        "state",
        "inviter",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by_name",
        "revoked_at",
    ]
    readonly_fields = fields
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        return actions if self.has_add_permission(request) else {}

    @admin.display(description="state")
    def state(self, obj):
        if obj.accepted_at:
            return "accepted"
        if obj.revoked_at:
            return "withdrawn"
        if obj.expires_at <= timezone.now():
            return "expired"
        return "pending"

    @admin.display(description="invited by")
    def inviter(self, obj):
        return obj.invited_by.get_username() if obj.invited_by else "—"

    @admin.display(description="accepted by")
    def accepted_by_name(self, obj):
        return obj.accepted_by.get_username() if obj.accepted_by else "—"

    def add_view(self, request, form_url="", extra_context=None):
        """Invites by email through the service; the link is also shown once, for when
        the email cannot be delivered."""
        if not self.has_add_permission(request):
            return redirect("admin:catalog_invitation_changelist")
        organizations = (
            Organization.objects.all()
            if request.user.is_superuser
            else organizations_stewarded_by(request.user)
        )
        form = InvitationForm(request.POST or None, organizations=organizations)
        if request.method == "POST" and form.is_valid():
            try:
                sent = invitation_create(
                    organization=form.cleaned_data["organization"],
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    actor=Actor.from_request(request, via="admin"),
                    link_for=lambda secret: request.build_absolute_uri(
                        reverse("portal:invitation", args=[secret])
                    ),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                invitation = sent.invitation
                if sent.emailed:
                    self.message_user(
                        request,
                        f"Invitation sent to {invitation.email} ({invitation.role} of "
                        f"{invitation.organization.slug}).",
                        messages.SUCCESS,
                    )
                else:
                    self.message_user(
                        request,
                        f"The email to {invitation.email} could not be sent. Give them this "
                        f"link yourself (shown once): {sent.link}",
                        messages.WARNING,
                    )
                return redirect("admin:catalog_invitation_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Invite someone",
            "form": form,
        }
        return TemplateResponse(request, "admin/catalog/invitation/invite.html", context)

    @admin.action(description="Withdraw the selected invitations")
    def revoke(self, request, queryset):
        actor = Actor.from_request(request, via="admin")
        done = []
        for invitation in queryset.select_related("organization"):
            try:
                invitation_revoke(invitation=invitation, actor=actor)
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                done.append(invitation.email)
        if done:
            self.message_user(request, f"Withdrawn: {', '.join(done)}.", messages.SUCCESS)
