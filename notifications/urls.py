from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path(
        "datasets/<int:dataset_id>/subscription/",
        views.dataset_subscription,
        name="dataset-subscription",
    ),
]
