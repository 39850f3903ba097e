from django.apps import AppConfig


class ReplicationConfig(AppConfig):
    name = "replication"
    verbose_name = "Replication"

    def ready(self) -> None:
        from catalog import events, hooks, registry
        from replication import demo, handlers, locators, selectors

        events.subscribe("version.published", handlers.on_version_published)
        events.subscribe("version.rolled_back", handlers.on_version_rolled_back)

        hooks.download_locator_register(locators.download_locate)
        hooks.local_store_resolver_register(locators.local_store)
        hooks.demo_extender_register(demo.demo_regions_and_rules)

        panel = registry.Panel(
            name="replication",
            title="Replicas",
            template="replication/panel.html",
            context=selectors.dataset_panel_context,
        )
        registry.panel_register(registry.DATASET_PAGE, panel)
        registry.panel_register(registry.DATASET_ADMIN, panel)
        registry.column_register(
            registry.HEALTH_DASHBOARD,
            registry.Column(
                name="replication", title="Replicas", values=selectors.health_column_values
            ),
        )
