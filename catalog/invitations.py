"""Invitations: a steward asks someone to join an organisation; the emailed link lets them
set a password (or use their account) and become a member.

The link carries a random secret (256 bits); only its SHA-256 is stored, as for API
tokens, so a copy of the database opens no door. The email is sent after the
invitation is committed: a mail server that is down must not lose the invitation, so
the steward is told and can copy the link, which `invitation_create` returns once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from catalog.audit import Actor, audit_record
from catalog.exceptions import InvalidInput, NotFound
from catalog.models import STEWARD_ROLES, Invitation, Organization, Role
from catalog.services import ensure_steward, membership_set

logger = logging.getLogger(__name__)

_SECRET_BYTES = 32


def invitation_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class InvitationSent:
    """A new invitation, its secret (never shown again) and whether the email went out."""

    invitation: Invitation
    secret: str
    link: str
    emailed: bool


def invitation_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    actor: Actor,
    link_for: Callable[[str], str],
) -> InvitationSent:
    """Invites `email` into `organization` with `role` and emails the link `link_for(secret)`.

    Only its stewards may invite (Forbidden otherwise). A pending invitation to the same
    address is replaced, so the newest link is the one that works.
    """
    ensure_steward(actor=actor, organization=organization)
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(
            f"{email!r} is not an email address.", details={"field": "email"}
        ) from None
    if role not in Role.values:
        raise InvalidInput(
            f"Unknown role {role!r}: use one of {', '.join(Role.values)}.",
            details={"field": "role"},
        )
    if (
        get_user_model()
        .objects.filter(email__iexact=email, memberships__organization=organization)
        .exists()
    ):
        raise InvalidInput(
            f"{email} is already a member of {organization.slug}.", details={"field": "email"}
        )
    raw = secrets.token_urlsafe(_SECRET_BYTES)
    now = timezone.now()
    try:
        with transaction.atomic():
            Invitation.objects.filter(
                organization=organization,
                email=email,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
            ).update(revoked_at=now)
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                digest=invitation_digest(raw),
                invited_by=actor.user if getattr(actor.user, "pk", None) else None,
                expires_at=now + timedelta(days=settings.INVITATION_DAYS),
            )
            audit_record(
                actor=actor,
                action="invitation.create",
                obj=invitation,
                organization=organization,
                details={"email": email, "role": role},
            )
    except IntegrityError:
        # Another steward invited the same address at the same moment.
        raise InvalidInput(f"{email} was invited a moment ago; try again.") from None
    link = link_for(raw)
    return InvitationSent(
        invitation=invitation,
        secret=raw,
        link=link,
        emailed=_invitation_email(invitation=invitation, link=link, actor=actor),
    )


def _invitation_email(*, invitation: Invitation, link: str, actor: Actor) -> bool:
    inviter = actor.user.get_username() if getattr(actor.user, "pk", None) else "A steward"
    context = {"invitation": invitation, "link": link, "inviter": inviter}
    try:
        send_mail(
            subject=f"Join {invitation.organization.name} on Dataset Publisher",
            message=render_to_string("catalog/invitation_email.txt", context),
            from_email=None,
            recipient_list=[invitation.email],
        )
    except Exception:
        # The secret is in the link: log neither.
        logger.exception("The invitation email to %s could not be sent.", invitation.email)
        return False
    return True


def invitation_pending(*, secret: str) -> Invitation:
    """The pending invitation behind a link's secret; NotFound for an unknown, used,
    replaced or expired one, with a message saying which."""
    invitation = (
        Invitation.objects.select_related("organization")
        .filter(digest=invitation_digest(secret or ""))
        .first()
    )
    if invitation is None:
        raise NotFound("This invitation link is not valid. Ask for a new invitation.")
    if invitation.accepted_at is not None:
        raise NotFound("This invitation has already been accepted. Sign in instead.")
    if invitation.revoked_at is not None:
        raise NotFound("This invitation was replaced by a newer one: use the latest email.")
    if invitation.expires_at <= timezone.now():
        raise NotFound("This invitation has expired. Ask the steward for a new one.")
    return invitation


def invitation_accept(
    *,
    secret: str,
    actor: Actor,
    user=None,
    username: str = "",
    password: str = "",
):
    """Accepts the invitation behind `secret` and returns the member.

    With `user` (someone signed in), that account joins. Otherwise a new account is made
    with `username`, the invited address and `password` (checked by the password
    validators). Stewards and admins get the admin site too (`is_staff`). Accepting twice
    is refused: the row is locked while it is used.
    """
    User = get_user_model()
    with transaction.atomic():
        invitation = invitation_pending(secret=secret)
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None:
            raise NotFound("This invitation has already been accepted. Sign in instead.")
        if user is None:
            username = (username or "").strip()
            if not username:
                raise InvalidInput("Choose a username.", details={"field": "username"})
            if User.objects.filter(username__iexact=username).exists():
                raise InvalidInput(
                    f"The username {username!r} is taken; choose another.",
                    details={"field": "username"},
                )
            if User.objects.filter(email__iexact=invitation.email).exists():
                raise InvalidInput(
                    f"An account with {invitation.email} exists: sign in, then open the "
                    "invitation link again.",
                    details={"field": "username"},
                )
            candidate = User(username=username, email=invitation.email)
            try:
                validate_password(password, user=candidate)
            except ValidationError as err:
                raise InvalidInput(" ".join(err.messages), details={"field": "password"}) from None
            candidate.set_password(password)
            candidate.full_clean(exclude=["password"])
            candidate.save()
            user = candidate
        if invitation.role in STEWARD_ROLES and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        member_actor = Actor(user=user, ip_address=actor.ip_address, via=actor.via)
        membership_set(
            organization=invitation.organization,
            user=user,
            role=invitation.role,
            actor=member_actor,
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            actor=member_actor,
            action="invitation.accept",
            obj=invitation,
            organization=invitation.organization,
            details={"role": invitation.role},
        )
    return user


def invitation_revoke(*, invitation: Invitation, actor: Actor) -> Invitation:
    """Withdraws a pending invitation; its link stops working at once."""
    ensure_steward(actor=actor, organization=invitation.organization)
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        return invitation
    with transaction.atomic():
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="invitation.revoke",
            obj=invitation,
            organization=invitation.organization,
        )
    return invitation


def invitations_of(organizations: QuerySet[Organization]) -> QuerySet[Invitation]:
    return Invitation.objects.filter(organization__in=organizations).select_related(
        "organization", "invited_by", "accepted_by"
    )
