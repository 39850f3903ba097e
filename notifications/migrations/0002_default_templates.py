"""Loads the default template of every notification type on every channel (seed 000's
four and the rest), leaving alone any a steward has made already."""

from django.db import migrations


def load(apps, schema_editor):
    from notifications.defaults import all_defaults

    Template = apps.get_model("notifications", "Template")
    existing = set(Template.objects.values_list("notification_type", "channel"))
    Template.objects.bulk_create(
        Template(**row)
        for row in all_defaults()
        if (row["notification_type"], row["channel"]) not in existing
    )


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_notifications_queue_and_preferences")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
