"""Validators shared by models, forms and serializers."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError


def has_control_characters(text: str) -> bool:
    """True when `text` holds a control character (Unicode category Cc: NUL, line
    breaks, tabs, DEL, C1 controls)."""
    return any(unicodedata.category(char) == "Cc" for char in text)


def validate_header_text(value: str) -> None:
    """Refuses control characters in text that is sent in HTTP headers (a deprecation
    message reaches every response about its version as `Warning`): a raw control
    character there breaks the response for every client, or splits it in two."""
    if has_control_characters(value or ""):
        raise ValidationError(
            "Control characters (line breaks, tabs and the like) are not allowed: this "
            "text is sent to clients in an HTTP header. Write it on one line.",
            code="control_characters",
        )
