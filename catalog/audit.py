"""The audit log of steward actions, written by the services that perform them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from catalog.models import AuditEntry, Organization


@dataclass(frozen=True)
class Actor:
    """Who asks for a service call, and from where: the user, their address, the door
    they came through (admin, api, command, worker)."""

    user: object | None = None
    ip_address: str | None = None
    via: str = ""

    @classmethod
    def from_request(cls, request, *, via: str) -> Actor:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        ip = forwarded.split(",")[0].strip() if forwarded else request.META.get("REMOTE_ADDR")
        return cls(
            user=request.user if request.user.is_authenticated else None,
            ip_address=ip or None,
            via=via,
        )


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model,
    organization: Organization | None = None,
    details: dict | None = None,
) -> AuditEntry:
    user = actor.user
    return AuditEntry.objects.create(
        actor=user if getattr(user, "pk", None) else None,
        actor_name=getattr(user, "get_username", lambda: "")() if user else "",
        organization=organization,
        action=action,
        object_type=obj._meta.label,
        object_id=str(obj.pk),
        object_repr=str(obj)[:300],
        details=details or {},
        ip_address=actor.ip_address,
        via=actor.via,
    )
