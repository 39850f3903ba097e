"""Turning an event into words: the context a template sees, and the templates' engine.

Templates are edited by stewards, so they run in an engine of their own: no loaders (no
`{% include %}` or `{% extends %}` of files), no tag libraries beyond the built-ins, and
a context holding only the event's facts (never a user object, a request or settings).
Text parts are rendered without HTML escaping, the email's HTML part with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.template import Context, Engine, TemplateSyntaxError

from catalog.exceptions import InvalidInput
from catalog.models import DomainEvent
from notifications import defaults
from notifications.models import NotificationType, Template

_engine = Engine(debug=True, libraries={}, loaders=[])


class TemplateInvalid(InvalidInput):
    code = "template_invalid"


def template_check(source: str, *, field: str) -> None:
    """Raises TemplateInvalid naming the field and line of a syntax error."""
    try:
        _engine.from_string(source)
    except TemplateSyntaxError as exc:
        info = getattr(exc, "template_debug", None) or {}
        line = info.get("line")
        where = f" on line {line}" if line else ""
        raise TemplateInvalid(
            f"The {field} has a template syntax error{where}: {exc}",
            details={"field": field, "line": line},
        ) from None


@lru_cache(maxsize=512)
def _compiled(source: str):
    # Compiling costs more than rendering; a template's text is its identity.
    return _engine.from_string(source)


def render_string(source: str, context: dict, *, autoescape: bool = False) -> str:
    return _compiled(source).render(Context(context, autoescape=autoescape))


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    html: str


def template_for(notification_type: str, channel: str) -> dict[str, str]:
    row = (
        Template.objects.filter(notification_type=notification_type, channel=channel)
        .values("subject", "body", "html")
        .first()
    )
    return row or defaults.default_for(notification_type, channel)


def render(parts: dict[str, str], context: dict) -> Rendered:
    return Rendered(
        subject=" ".join(render_string(parts["subject"], context).split())[:300],
        body=render_string(parts["body"], context).strip(),
        html=render_string(parts["html"], context, autoescape=True) if parts.get("html") else "",
    )


def render_digest(items: list[Rendered]) -> Rendered:
    context = {"count": len(items), "items": [{"subject": i.subject} for i in items]}
    return Rendered(
        subject=render_string(defaults.DIGEST_SUBJECT, context),
        body=render_string(defaults.DIGEST_BODY, context).strip(),
        html="",
    )


# --- Context --------------------------------------------------------------------------


def dataset_url(path: str, organization: str) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/v1/orgs/{organization}/datasets/{path}/"


def _names(items: list) -> list[str]:
    return [i["name"] if isinstance(i, dict) else str(i) for i in items or []]


def event_context(event: DomainEvent, notification_type: str) -> dict:
    """The facts of `event` a template may use: plain JSON values only."""
    p = event.payload
    version = p.get("version") or p.get("to_version") or ""
    context = {
        "type": notification_type,
        "type_label": NotificationType(notification_type).label,
        "topic": event.topic,
        "event_id": event.pk,
        "occurred_at": event.created_at.isoformat() if event.created_at else "",
        "organization": p.get("organization", ""),
        "dataset": p.get("dataset", ""),
        "dataset_id": p.get("dataset_id"),
        "version": version,
        "version_id": p.get("version_id"),
        "previous_version": p.get("previous_version") or p.get("from_version") or "",
        "change_type": p.get("change_type", ""),
        "breaking": bool(p.get("breaking")),
        "breaking_columns": _names(p.get("breaking_columns")),
        "reason": p.get("reason", ""),
        "message": p.get("message", ""),
        "note": p.get("note", ""),
        "sunset": p.get("sunset", ""),
        "row_count": p.get("row_count"),
        "regions": p.get("regions", []),
        "metric": p.get("metric", "reads"),
        "value": p.get("value", p.get("count")),
        "period": p.get("period", ""),
        "threshold": p.get("threshold"),
        "stale": event.topic == "dataset.stale",
        "freshness_hours": p.get("freshness_hours"),
        "hours_late": p.get("hours_late"),
        "previous_major": p.get("previous_major"),
    }
    diff = p.get("diff") or {}
    context["added_columns"] = _names(diff.get("added") or p.get("added_columns"))
    context["removed_columns"] = _names(diff.get("removed") or p.get("removed_columns"))
    context["retyped_columns"] = _names(diff.get("retyped") or p.get("retyped_columns"))
    if context["dataset"] and context["organization"]:
        context["url"] = dataset_url(context["dataset"], context["organization"])
    else:
        context["url"] = ""
    context["summary"] = f"{context['type_label']}: {context['organization']}/{context['dataset']}"
    return context
