"""Helpers the management commands share."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from catalog.exceptions import DomainError
from catalog.models import Dataset, Organization
from catalog.selectors import dataset_get_by_path


def organization_or_error(slug: str | None) -> Organization | None:
    if not slug:
        return None
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        known = ", ".join(Organization.objects.values_list("slug", flat=True)) or "none yet"
        raise CommandError(f"No organisation {slug!r} (known: {known}).")
    return org


def dataset_or_error(path: str, org_slug: str | None) -> Dataset:
    try:
        return dataset_get_by_path(path=path, organization=organization_or_error(org_slug))
    except DomainError as exc:
        raise CommandError(exc.message) from None


class VersionOptionCommand(BaseCommand):
    """A command whose `--version` names a dataset version, not Django's own version."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)
