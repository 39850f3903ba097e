"""python manage.py fetch <layer>/<name> [--org ORG] [--version X.Y.Z] -o PATH"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from catalog.storage import get_object_store
from versioning.management.commands._common import VersionOptionCommand, dataset_or_error
from versioning.models import DatasetVersion


class Command(VersionOptionCommand):
    help = "Write the stored bytes of a dataset version (the current one by default) to a file."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="<layer>/<name>")
        parser.add_argument("-o", "--output", type=Path, required=True, help="where to write")
        parser.add_argument("--org", help="the organisation, when several have that dataset")
        parser.add_argument("--version", dest="requested_version", help="default: current")

    def handle(self, *args, **options):
        dataset = dataset_or_error(options["dataset"], options["org"])
        versions = DatasetVersion.objects.filter(dataset=dataset)
        wanted = options["requested_version"]
        version = (
            versions.filter(version=wanted).first()
            if wanted
            else versions.filter(is_current=True).first()
        )
        if version is None:
            raise CommandError(
                f"{dataset.path} has no version {wanted}."
                if wanted
                else f"{dataset.path} has no published version yet."
            )
        output: Path = options["output"]
        digest = hashlib.sha256()
        partial = output.with_name(f".{output.name}.partial")
        with get_object_store().open(version.key) as stream, partial.open("wb") as out:
            while chunk := stream.read(settings.STREAM_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != version.sha256:
            partial.unlink(missing_ok=True)
            raise CommandError(
                f"The stored bytes of {version} do not match its SHA-256; nothing was written."
            )
        os.replace(partial, output)
        self.stdout.write(
            f"Wrote {dataset.path} {version.version} to {output} "
            f"({version.size_bytes:,} bytes, SHA-256 {version.sha256})."
        )
