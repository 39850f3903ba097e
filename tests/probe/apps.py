"""A test-only app that subscribes a handler to `probe.*` events, so the tests can see
exactly when and how often the outbox delivers, in this process or in a worker."""

from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "tests.probe"
    label = "probe"

    def ready(self) -> None:
        from catalog import events
        from tests.probe import handlers

        events.subscribe("probe.*", handlers.record_delivery)
