"""`{% page_panels place as panels %}`: the panels other apps registered for a place
(`catalog.registry`), rendered for this request (and `dataset`, where there is one)."""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

from catalog import registry

register = template.Library()


@register.simple_tag(takes_context=True)
def page_panels(context, place: str, dataset=None) -> list[registry.RenderedPanel]:
    rendered = registry.panels_render(place, request=context.get("request"), dataset=dataset)
    # Each panel's HTML came from its own template, escaped there.
    return [
        registry.RenderedPanel(name=p.name, title=p.title, html=mark_safe(p.html)) for p in rendered
    ]
