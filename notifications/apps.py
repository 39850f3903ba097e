from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from catalog import events, registry
        from catalog.registry import Badge, NavItem
        from notifications import handlers, selectors

        for topic in handlers.FAN_OUT_TOPICS:
            events.subscribe(topic, handlers.on_event)
        events.subscribe("usage.breaking_change_consumers", handlers.on_breaking_change_consumers)

        registry.column_register(
            registry.HEALTH_DASHBOARD,
            registry.Column(
                name="subscribers", title="Subscribers", values=selectors.subscriber_counts
            ),
        )
        registry.panel_register(
            registry.DATASET_PAGE,
            registry.Panel(
                name="subscribe",
                title="Notifications",
                template="notifications/subscribe_panel.html",
                context=selectors.subscribe_panel_context,
            ),
        )
        registry.nav_register(
            NavItem(name="inbox", title="Inbox", url_name="notifications:inbox", order=40)
        )
        registry.nav_register(
            NavItem(
                name="subscriptions",
                title="Subscriptions",
                url_name="notifications:subscriptions",
                order=50,
            )
        )
        registry.nav_register(
            NavItem(
                name="preferences",
                title="Preferences",
                url_name="notifications:preferences",
                order=60,
            )
        )
        registry.nav_register(
            NavItem(name="webhooks", title="Webhooks", url_name="notifications:webhooks", order=70)
        )
        registry.badge_register(
            Badge(
                name="unread",
                template="notifications/unread_badge.html",
                context=selectors.unread_badge_context,
            )
        )
        registry.panel_register(
            registry.DATASET_ADMIN,
            registry.Panel(
                name="subscribers",
                title="Subscribers",
                template="notifications/subscribers_panel.html",
                context=selectors.subscribers_panel_context,
            ),
        )
