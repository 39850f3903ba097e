"""`manage.py usage_ingest`: moves buffered usage events into the log now and rolls up
the days they touched, as the `usage.ingest` and `usage.rollup` tasks do on schedule.
On a web host in the services mode it also replays that host's spool (events kept
while Redis was down)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from usage.services import buffer, ingest, maintenance, rollups


class Command(BaseCommand):
    help = "Ingest buffered usage events and roll up the days they touched."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-rollup", action="store_true", help="only ingest; leave rollups to the task"
        )
        parser.add_argument(
            "--maintain",
            action="store_true",
            help="also make partitions ahead, apply the retention and compute yesterday's "
            "segments, thresholds and anomalies",
        )

    def handle(self, *args, no_rollup: bool, maintain: bool, **options):
        result = ingest.events_ingest()
        self.stdout.write(f"ingested: {result.written} new of {result.read} read")
        if not no_rollup:
            days = rollups.rollups_run_due(limit=400)
            self.stdout.write(f"rolled up: {', '.join(map(str, days)) or 'nothing due'}")
        if maintain:
            from usage.services import alerts, segments

            made = maintenance.partitions_maintain()
            dropped = maintenance.retention_apply()
            done = maintenance.daily_run(
                steps=[segments.segments_compute, alerts.thresholds_check, alerts.anomalies_detect]
            )
            self.stdout.write(
                f"partitions made: {made or 'none'}; dropped: {dropped or 'none'}; "
                f"daily: {done or 'waiting for rollups'}"
            )
        waiting = buffer.spool_size()
        if waiting:
            self.stdout.write(f"still spooled on this host: {waiting} bytes")
