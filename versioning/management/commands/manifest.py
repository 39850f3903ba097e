"""python manage.py manifest [--org ORG]"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from catalog.models import Organization
from versioning.management.commands._common import organization_or_error
from versioning.manifest import manifest_latest


class Command(BaseCommand):
    help = "Print an organisation's current manifest (latest.json) as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="the organisation (needed when there are several)")

    def handle(self, *args, **options):
        org = organization_or_error(options["org"])
        if org is None:
            orgs = list(Organization.objects.all()[:2])
            if len(orgs) != 1:
                raise CommandError("Name the organisation with --org.")
            org = orgs[0]
        manifest = manifest_latest(organization=org)
        if manifest is None:
            raise CommandError(f"{org.slug} has published nothing yet, so it has no manifest.")
        self.stdout.write(json.dumps(manifest.body, indent=2, sort_keys=True))
