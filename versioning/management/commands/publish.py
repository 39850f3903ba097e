"""python manage.py publish <layer>/<name> <path> [--org ORG] [--version X.Y.Z]
[--input <layer>/<name>@<version> ...] [--draft] [--allow-breaking] [--sha256 HEX]
[--resume UPLOAD_ID] [--wait | --in-process]

Files above RESUMABLE_UPLOAD_THRESHOLD_BYTES (and any run with --resume) go as a
resumable upload (`versioning/management/commands/_parts.py`): in parts, four at a time,
straight to storage; a run that stops can be resumed and sends only the missing parts.
With --version such an upload is joined at that version's key, so its publish copies
nothing; without one it is joined in staging and copied once to the key the worker
decides (a streamed file goes to the key of its likely version either way)."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from tqdm import tqdm

from catalog.audit import Actor
from catalog.exceptions import DomainError
from versioning.management.commands._common import VersionOptionCommand, dataset_or_error
from versioning.management.commands._parts import resumable_send
from versioning.models import JobSource, JobStatus, PublishJob
from versioning.options import PublishOptions
from versioning.services import publish_job_create, publish_job_run


class Command(VersionOptionCommand):
    help = (
        "Publish a CSV (plain or gzip) or Parquet file as a new version of a dataset. The "
        "file is streamed into storage and a background job publishes it; --wait follows "
        "the job to its end, --in-process runs it here without a worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="<layer>/<name>, e.g. gold/txn_daily")
        parser.add_argument("path", type=Path, help="the file to publish")
        parser.add_argument("--org", help="the organisation, when several have that dataset")
        parser.add_argument(
            "--version",
            dest="requested_version",
            default="",
            help="the semantic version (default: the one the schema change calls for); a "
            "pre-release such as 2.0.0-rc.1 publishes as a draft",
        )
        parser.add_argument("--note", default="", help="a changelog note (markdown)")
        parser.add_argument(
            "--input",
            dest="inputs",
            action="append",
            default=[],
            metavar="LAYER/NAME@VERSION",
            help="a version this file was built from (lineage); repeat for several",
        )
        parser.add_argument(
            "--draft",
            action="store_true",
            help="publish as a draft: the current version stays until a steward promotes it",
        )
        parser.add_argument(
            "--allow-breaking",
            action="store_true",
            help="accept a breaking change without a major version (the changelog records it)",
        )
        parser.add_argument(
            "--sha256",
            default="",
            metavar="HEX",
            help="the SHA-256 the file must have (e.g. from sha256sum); other bytes are refused",
        )
        parser.add_argument(
            "--resume",
            metavar="UPLOAD_ID",
            default="",
            help="carry on with this resumable upload (printed when it began): only the "
            "parts storage does not hold yet are sent, with the options it began with",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--wait", action="store_true", help="wait for the worker to finish")
        mode.add_argument(
            "--in-process",
            action="store_true",
            help="run the publish in this process (no worker needed)",
        )
        parser.add_argument(
            "--timeout", type=int, default=3600, help="seconds --wait waits at most (default 3600)"
        )

    def handle(self, *args, **options):
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        dataset = dataset_or_error(options["dataset"], options["org"])
        size = path.stat().st_size
        quiet = options["verbosity"] == 0
        bar = tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc="upload",
            disable=quiet,
            file=self.stderr._out,
        )
        publish_options = PublishOptions(
            version=options["requested_version"],
            note=options["note"],
            inputs=options["inputs"],
            draft=options["draft"],
            allow_breaking=options["allow_breaking"],
        )
        try:
            if options["resume"] or size > settings.RESUMABLE_UPLOAD_THRESHOLD_BYTES:
                job = resumable_send(
                    dataset=dataset,
                    path=path,
                    options=publish_options,
                    sha256=options["sha256"],
                    resume=options["resume"],
                    bar=bar,
                    say=self.stdout.write,
                )
            else:
                with path.open("rb") as stream:
                    job = publish_job_create(
                        dataset=dataset,
                        stream=stream,
                        filename=path.name,
                        actor=Actor.system(via="command"),
                        source=JobSource.COMMAND,
                        options=publish_options,
                        expected_sha256=options["sha256"],
                        on_progress=lambda done: bar.update(done - bar.n),
                    )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        finally:
            bar.close()
        if options["in_process"]:
            job = publish_job_run(job_id=job.pk) or job
        elif options["wait"]:
            job = self._wait(job, options["timeout"], quiet)
        else:
            self.stdout.write(f"Queued publish job {job.pk} for {dataset.path}.")
            return
        self._report(job)

    def _wait(self, job: PublishJob, timeout: int, quiet: bool) -> PublishJob:
        deadline = time.monotonic() + timeout
        bar = tqdm(
            total=job.bytes_total or 0,
            unit="B",
            unit_scale=True,
            desc="publish",
            disable=quiet,
            file=self.stderr._out,
        )
        try:
            while True:
                job.refresh_from_db()
                bar.update(max(0, job.bytes_done - bar.n))
                if job.is_finished:
                    return job
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"Job {job.pk} is still {job.status} after {timeout} s; is a worker "
                        "running (make worker)?"
                    )
                time.sleep(0.5)
        finally:
            bar.close()

    def _report(self, job: PublishJob) -> None:
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Publish failed: {job.message}")
        version = job.version
        self.stdout.write(job.message)
        self.stdout.write(f"version: {version.version}")
        self.stdout.write(f"key:     {version.key}")
        self.stdout.write(f"sha256:  {version.sha256}")
        breaking = ", ".join(version.diff.get("breaking_columns", []))
        self.stdout.write(
            f"change:  {version.change_type}" + (f" (breaking: {breaking})" if breaking else "")
        )
        self.stdout.write(f"status:  {version.status}{' (current)' if version.is_current else ''}")
