"""The header's parts that other apps contribute (navigation, badges), and small
formatting helpers for the subscriber pages."""

from __future__ import annotations

from django import template

from catalog import registry

register = template.Library()


@register.inclusion_tag("portal/_nav.html", takes_context=True)
def site_nav(context) -> dict:
    request = context["request"]
    return {"items": registry.nav_render(request)}


@register.inclusion_tag("portal/_badges.html", takes_context=True)
def header_badges(context) -> dict:
    request = context["request"]
    if not request.user.is_authenticated:
        return {"badges": []}
    return {"badges": registry.badges_render(request)}
