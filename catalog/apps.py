from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.site_header = "Dataset Publisher"
        admin.site.site_title = "Dataset Publisher"
        admin.site.index_title = "Stewardship"
