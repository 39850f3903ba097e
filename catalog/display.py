"""How facts read in the admin and the pages: people, changelog markdown, breaking
changes, checksums, counts and sizes. One place, so every screen says them alike."""

from __future__ import annotations

import re

from django.template.defaultfilters import filesizeformat
from django.urls import NoReverseMatch, reverse
from django.utils.formats import number_format
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")


def markdown_inline(text: str) -> SafeString:
    """The inline markdown changelogs use (`code` and **bold**) as HTML; everything else
    is escaped, so a note can never inject markup."""
    html = escape(text or "")
    html = _CODE.sub(r"<code>\1</code>", html)
    html = _BOLD.sub(r"<b>\1</b>", html)
    return mark_safe(html)  # noqa: S308 - built from escaped text


def person(user, *, viewer=None) -> str | SafeString:
    """A user's name; a link to their admin page only when `viewer` may open it (Django's
    user admin answers 403 to stewards, who hold no model permissions)."""
    if user is None:
        return "the pipeline"
    name = user.get_full_name() or user.get_username()
    if viewer is None or not viewer.has_perm("auth.view_user"):
        return name
    try:
        url = reverse("admin:auth_user_change", args=[user.pk])
    except NoReverseMatch:
        return name
    return format_html('<a href="{}">{}</a>', url, name)


def breaking_flag(breaking: bool, columns: list[str] | None = None) -> SafeString | str:
    """A breaking change reads as a warning, never as a green tick."""
    if not breaking:
        return "—"
    text = "Breaking" + (f": {', '.join(columns)}" if columns else "")
    return format_html('<span class="breaking-flag" title="Breaking change">⚠ {}</span>', text)


def short_sha(sha256: str) -> SafeString:
    """The first 12 characters, the whole checksum on hover and for copying."""
    return format_html('<code title="{}">{}…</code>', sha256, (sha256 or "")[:12])


def count(value: int | None) -> str:
    return "—" if value is None else number_format(value, force_grouping=True)


def size(value: int | None) -> str:
    return "—" if value is None else filesizeformat(value)


def size_change(value: int | None) -> str:
    """A change of size with its sign and unit: "+1.2 MB", "−21 bytes", "no change"."""
    if value is None:
        return "—"
    if value == 0:
        return "no change"
    return ("+" if value > 0 else "−") + filesizeformat(abs(value))
