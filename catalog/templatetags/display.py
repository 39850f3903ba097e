"""`{% load display %}`: facts as every screen shows them (catalog/display.py)."""

from __future__ import annotations

from django import template

from catalog import display

register = template.Library()


@register.filter
def markdown_inline(text: str):
    """Changelog markdown (`code`, **bold**) as HTML, everything else escaped."""
    return display.markdown_inline(text)


@register.filter
def breaking_flag(breaking: bool, columns=None):
    return display.breaking_flag(breaking, columns)


@register.filter
def size_change(value):
    return display.size_change(value)
