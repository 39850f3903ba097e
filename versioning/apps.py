from django.apps import AppConfig


class VersioningConfig(AppConfig):
    name = "versioning"
    verbose_name = "Versioning"

    def ready(self) -> None:
        from catalog import events
        from versioning import columnar, handlers

        events.subscribe("manifest.generated", handlers.write_manifest_to_storage)
        events.subscribe(
            "version.published", handlers.emit_openlineage, wants=handlers.openlineage_wanted
        )
        events.subscribe(
            "version.published", columnar.on_version_published, wants=columnar.copy_wanted_for
        )
