"""A test-only app: subscribes a handler to `probe.*` events, so the tests can see
exactly when and how often the outbox delivers, in this process or in a worker; and,
when a worker is started with PROBE_CRASH_BEFORE_COMMIT=<file>, makes that worker die
by SIGKILL at the point a real crash hurts most (see `crashes.py`)."""

import os

from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "tests.probe"
    label = "probe"

    def ready(self) -> None:
        from catalog import events
        from tests.probe import crashes, handlers

        events.subscribe("probe.*", handlers.record_delivery)
        if os.environ.get(crashes.CRASH_BEFORE_COMMIT):
            crashes.arm_crash_before_commit(os.environ[crashes.CRASH_BEFORE_COMMIT])
