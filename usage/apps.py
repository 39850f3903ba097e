from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from catalog import events, registry
        from usage import handlers, selectors

        events.subscribe(
            "version.published", handlers.on_version_published, wants=handlers.is_breaking
        )

        registry.panel_register(
            registry.ADMIN_HOME,
            registry.Panel(
                name="usage",
                title="Today",
                template="usage/admin_home_panel.html",
                context=selectors.admin_home_panel_context,
                order=10,
            ),
        )
        registry.panel_register(
            registry.DATASET_ADMIN,
            registry.Panel(
                name="usage",
                title="Usage",
                template="usage/dataset_panel.html",
                context=selectors.dataset_panel_context,
            ),
        )
        registry.column_register(
            registry.CATALOG_LIST,
            registry.Column(
                name="downloads_30d", title="Downloads (30 days)", values=selectors.downloads_30d
            ),
        )
