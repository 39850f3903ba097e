"""What the version, job and dataset admins share: a schema as a table, and the viewer
remembered on the object a page shows."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join

from catalog import display


def schema_table(schema: list[dict]):
    """A version's columns as a table (column, type, nulls)."""
    rows = format_html_join(
        "",
        '<tr><td><code>{}</code></td><td>{}</td><td class="num">{}</td></tr>',
        ((c["name"], c["type"], display.count(c.get("nulls"))) for c in schema),
    )
    return format_html(
        '<table class="schema-table"><thead><tr><th>column</th><th>type</th>'
        '<th class="num">nulls</th></tr></thead><tbody>{}</tbody></table>',
        rows,
    )


class ViewerOnObject:
    """Remembers who looks at an object's page on the object: display methods get only
    the object, and who looks decides what links (`catalog.display.person`)."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.viewer = request.user
        return obj


class ReadOnlyInline:
    """An inline stewards read and never edit: they hold no model permissions, and the
    parent admin scopes what they see."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return True
