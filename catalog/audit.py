"""The audit log of steward actions, written by the services that perform them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from catalog.addresses import client_ip
from catalog.models import AuditEntry, Organization


@dataclass(frozen=True)
class Actor:
    """Who asks for a service call, and from where: the user, their address, the door
    they came through (admin, api, command, worker).

    An actor without a user is nobody (an anonymous request) and may change nothing.
    Commands and workers that act for the system say so explicitly with
    `Actor.system(...)`: a missing user is never taken to mean the system.
    """

    user: object | None = None
    ip_address: str | None = None
    via: str = ""
    is_system: bool = False

    @classmethod
    def system(cls, *, via: str = "command") -> Actor:
        """The system itself (a management command, a worker): may act anywhere."""
        return cls(via=via, is_system=True)

    @classmethod
    def from_request(cls, request, *, via: str) -> Actor:
        return cls(
            user=request.user if request.user.is_authenticated else None,
            ip_address=client_ip(request),
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
