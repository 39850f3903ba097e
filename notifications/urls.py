"""The notification pages, mounted under /notifications/."""

from django.urls import path

from notifications import views

app_name = "notifications"

WEBHOOK = "webhooks/<int:endpoint_id>/"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path(
        "datasets/<int:dataset_id>/subscription/",
        views.dataset_subscription,
        name="dataset-subscription",
    ),
    path("subscriptions/", views.subscriptions, name="subscriptions"),
    path("subscriptions/new/", views.subscription_new, name="subscription-new"),
    path("subscriptions/<int:subscription_id>/", views.subscription_edit, name="subscription"),
    path(
        "subscriptions/<int:subscription_id>/delete/",
        views.subscription_delete,
        name="subscription-delete",
    ),
    path("preferences/", views.preferences, name="preferences"),
    path("confirm-email/<str:token>/", views.email_confirm, name="email-confirm"),
    path("webhooks/", views.webhooks, name="webhooks"),
    path(WEBHOOK, views.webhook_detail, name="webhook"),
    path(f"{WEBHOOK}rotate/", views.webhook_rotate, name="webhook-rotate"),
    path(f"{WEBHOOK}test/", views.webhook_test, name="webhook-test"),
    path(f"{WEBHOOK}toggle/", views.webhook_toggle, name="webhook-toggle"),
    path(f"{WEBHOOK}delete/", views.webhook_delete, name="webhook-delete"),
    path(
        f"{WEBHOOK}deliveries/<int:delivery_id>/replay/",
        views.webhook_replay,
        name="webhook-replay",
    ),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/<int:item_id>/read/", views.inbox_read, name="inbox-read"),
    path("inbox/read-all/", views.inbox_read_all, name="inbox-read-all"),
]
