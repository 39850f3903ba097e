"""python manage.py demo: the Scout demo organisation, its steward and nine datasets."""

from __future__ import annotations

import io
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalog import hooks
from catalog.audit import Actor
from catalog.models import Dataset, Membership, Organization, Role
from catalog.services import dataset_create, membership_set, organization_create
from versioning.demo import DATASETS, INPUTS, demo_csv
from versioning.models import DatasetVersion, JobSource, JobStatus
from versioning.options import PublishOptions
from versioning.services import publish_job_create, publish_job_run

ORG = "scout"
STEWARD = "steward"
# One dataset gets a second version, to show history and rollback.
SECOND_VERSION = ("gold", "txn_daily")


class Command(BaseCommand):
    help = (
        "Create the demo organisation 'scout', its steward login 'steward' (password from "
        "DEMO_PASSWORD, else generated and printed) and publish seed 001's nine Scout "
        "datasets. Running it again changes nothing."
    )

    def handle(self, *args, **options):
        actor = Actor.system(via="command")
        org = Organization.objects.filter(slug=ORG).first() or organization_create(
            slug=ORG, name="Scout Analytics", actor=actor
        )
        self._steward(org, actor)
        # Other apps' demo rows (replication's regions and rules) exist before the demo
        # versions are published, so those publishes reach them as any other would.
        hooks.demo_extend(organization=org, stdout=self.stdout)
        published = 0
        for spec in DATASETS:
            dataset = Dataset.objects.filter(
                organization=org, layer=spec.layer, name=spec.name
            ).first()
            if dataset is None:
                dataset = dataset_create(
                    organization=org,
                    layer=spec.layer,
                    name=spec.name,
                    actor=actor,
                    title=spec.title,
                    description=spec.description,
                    tags=list(spec.tags),
                    update_frequency=spec.frequency,
                    freshness_hours=26 if spec.frequency == "daily" else 24 * 8,
                )
            if not DatasetVersion.objects.filter(dataset=dataset).exists():
                published += self._publish(
                    dataset,
                    demo_csv(spec),
                    "1.0.0",
                    "First release.",
                    inputs=INPUTS.get((spec.layer, spec.name), []),
                )
            if (spec.layer, spec.name) == SECOND_VERSION and not DatasetVersion.objects.filter(
                dataset=dataset, version="1.1.0"
            ).exists():
                data = demo_csv(spec, rows=spec.rows + 420, seed=1)
                published += self._publish(dataset, data, "1.1.0", "Adds the latest day.")
        self.stdout.write(
            f"Demo organisation {ORG!r}: {len(DATASETS)} datasets, {published} versions "
            "published now."
            if published
            else f"Demo organisation {ORG!r} is up to date."
        )

    def _publish(self, dataset: Dataset, data: bytes, version: str, note: str, inputs=()) -> int:
        job = publish_job_create(
            dataset=dataset,
            stream=io.BytesIO(data),
            filename=f"{dataset.name}.csv",
            actor=Actor.system(via="command"),
            source=JobSource.COMMAND,
            options=PublishOptions(version=version, note=note, inputs=inputs),
        )
        job = publish_job_run(job_id=job.pk) or job
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Publishing {dataset.path} failed: {job.message}")
        self.stdout.write(f"  {dataset.path} {version}: {job.version.row_count:,} rows")
        return 1

    def _steward(self, org: Organization, actor: Actor) -> None:
        User = get_user_model()
        wanted = os.environ.get("DEMO_PASSWORD", "")
        with transaction.atomic():
            user = User.objects.filter(username=STEWARD).first()
            if user is None:
                password = wanted or secrets.token_urlsafe(12)
                user = User.objects.create_user(
                    username=STEWARD,
                    password=password,
                    is_staff=True,
                    email="steward@scout.example",
                )
                self.stdout.write(f"Steward login: {STEWARD} / {password}")
            elif wanted and not user.check_password(wanted):
                user.set_password(wanted)
                user.save(update_fields=["password"])
                self.stdout.write(f"Steward login: {STEWARD} / {wanted}")
            else:
                self.stdout.write(
                    f"Steward login: {STEWARD} (password unchanged; set DEMO_PASSWORD or run "
                    f"`manage.py changepassword {STEWARD}` to choose one)"
                )
            if not Membership.objects.filter(
                user=user, organization=org, role=Role.STEWARD
            ).exists():
                membership_set(organization=org, user=user, role=Role.STEWARD, actor=actor)
