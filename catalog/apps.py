from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from django.contrib import admin
        from django.db.models.signals import post_delete, post_save

        from catalog.api import generations
        from catalog.models import Dataset, DomainEvent, Membership, Organization

        admin.site.site_header = "Dataset Publisher"
        admin.site.site_title = "Dataset Publisher"
        admin.site.index_title = "Stewardship"

        # Cached API answers follow the catalog's generation (catalog/api/generations.py).
        post_save.connect(generations.on_catalog_saved, sender=Dataset)
        post_delete.connect(generations.on_catalog_saved, sender=Dataset)
        post_save.connect(generations.on_catalog_saved, sender=Organization)
        post_delete.connect(generations.on_catalog_saved, sender=Organization)
        post_save.connect(generations.on_catalog_saved, sender=Membership)
        post_delete.connect(generations.on_catalog_saved, sender=Membership)
        post_save.connect(generations.on_event_recorded, sender=DomainEvent)
