from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The subscriber pages: the catalog, dataset pages, API tokens, sign-in and
    invitations. Other apps add their own pages to the header's navigation and their
    parts to the dataset page through `catalog.registry`."""

    name = "portal"
    verbose_name = "Subscriber pages"

    def ready(self) -> None:
        from django.contrib import admin

        from catalog import registry
        from catalog.registry import NavItem

        registry.nav_register(
            NavItem(
                name="catalog",
                title="Catalog",
                url_name="portal:catalog",
                order=10,
                visible=lambda request: True,
            )
        )
        # The admin's "View site" leads to the catalog.
        admin.site.site_url = "/"
        registry.nav_register(
            NavItem(name="tokens", title="API tokens", url_name="portal:tokens", order=80)
        )
