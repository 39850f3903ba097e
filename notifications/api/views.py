"""The notifications API: a user's own preferences, subscriptions, inbox and webhook
endpoints. Everything is scoped to the caller; another user's objects answer 404.

Reading needs a token's `read` scope, as does managing one's subscriptions, preferences
and inbox; webhook endpoints hold signing secrets, so changing them needs `admin`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.errors import COMMON_ERRORS, error_responses
from catalog.exceptions import Conflict, InvalidInput, NotFound
from catalog.models import TokenScope
from notifications import services
from notifications.api import filters, serializers
from notifications.models import (
    DELIVERY_FINISHED,
    Delivery,
    DeliveryStatus,
    Subscription,
    WebhookEndpoint,
)
from notifications.selectors import inbox_of
from notifications.services.preferences import inbox_mark_read

READ = TokenScope.READ
ADMIN = TokenScope.ADMIN
_USER_SCOPES = {"GET": READ, "POST": READ, "PUT": READ, "PATCH": READ, "DELETE": READ}
ERRORS = error_responses(*COMMON_ERRORS)
_ADMIN_SCOPES = {"GET": READ, "POST": ADMIN, "PUT": ADMIN, "PATCH": ADMIN, "DELETE": ADMIN}


class PreferenceView(APIView):
    """Your notification preferences: channels, addresses, frequency, quiet hours,
    digest time. Made with defaults on first read."""

    required_scopes = _USER_SCOPES

    @extend_schema(
        summary="Show your notification preferences",
        responses={200: serializers.PreferenceSerializer, **ERRORS},
    )
    def get(self, request):
        pref = services.preference_get(user=request.user)
        return Response(serializers.PreferenceSerializer(pref).data)

    @extend_schema(
        summary="Change your notification preferences",
        description="Quiet hours run from quiet_start to quiet_end (HH:MM) in time_zone "
        "(IANA, e.g. Europe/Paris) and may cross midnight; both null turns them off. A new "
        "email address waits as email_pending until it is confirmed from the link mailed "
        "to it; mail goes to the previous address until then.",
        request=serializers.PreferenceSerializer,
        responses={200: serializers.PreferenceSerializer, **ERRORS},
    )
    def patch(self, request):
        data = serializers.PreferenceSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        pref = services.preference_update(user=request.user, **data.validated_data)
        return Response(serializers.PreferenceSerializer(pref).data)

    put = patch


@extend_schema_view(
    list=extend_schema(
        summary="List your subscriptions",
        responses={200: serializers.SubscriptionSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="Show one of your subscriptions",
        responses={200: serializers.SubscriptionSerializer, **ERRORS},
    ),
    destroy=extend_schema(summary="Delete a subscription", responses={204: None, **ERRORS}),
)
class SubscriptionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    required_scopes = _USER_SCOPES
    serializer_class = serializers.SubscriptionSerializer
    filterset_class = filters.SubscriptionFilterSet
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Subscription.objects.none()
        return Subscription.objects.filter(user=self.request.user).select_related(
            "dataset__organization"
        )

    @extend_schema(
        summary="Subscribe to a dataset or a pattern of datasets",
        description="Name `dataset` (<layer>/<name>, one you may see) or `pattern` (a glob "
        "over <org>/<layer>/<name>, e.g. acme/gold/*), the notification `types`, and "
        "optionally `channels`, `frequency` and, for usage_threshold, `threshold`.",
        request=serializers.SubscriptionCreateInput,
        responses={201: serializers.SubscriptionSerializer, **ERRORS},
    )
    def create(self, request):
        data = serializers.SubscriptionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscription_create(user=request.user, **data.validated_data)
        return Response(
            serializers.SubscriptionSerializer(sub).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="Change a subscription's types, channels, frequency, threshold or state",
        request=serializers.SubscriptionUpdateInput,
        responses={200: serializers.SubscriptionSerializer, **ERRORS},
    )
    def partial_update(self, request, pk=None):
        data = serializers.SubscriptionUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscription_update(subscription=self.get_object(), **data.validated_data)
        return Response(serializers.SubscriptionSerializer(sub).data)


@extend_schema_view(
    list=extend_schema(
        summary="Your in-app inbox, newest first (?unread=true)",
        responses={200: serializers.InboxItemSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="One message of your inbox",
        responses={200: serializers.InboxItemSerializer, **ERRORS},
    ),
)
class InboxViewSet(viewsets.ReadOnlyModelViewSet):
    required_scopes = _USER_SCOPES
    serializer_class = serializers.InboxItemSerializer
    filterset_class = filters.InboxFilterSet
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return inbox_of(None).none()
        return inbox_of(self.request.user)

    @extend_schema(
        summary="Mark a message read",
        request=None,
        responses={200: serializers.InboxItemSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        item = self.get_object()
        inbox_mark_read(user=request.user, item_ids=[item.pk])
        item.refresh_from_db()
        return Response(serializers.InboxItemSerializer(item).data)

    @extend_schema(
        summary="Mark every message read",
        request=None,
        responses={200: serializers.MarkedResult, **ERRORS},
    )
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request):
        return Response({"marked": inbox_mark_read(user=request.user)})


@extend_schema_view(
    list=extend_schema(
        summary="List your webhook endpoints",
        responses={200: serializers.WebhookEndpointSerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="Show a webhook endpoint",
        responses={200: serializers.WebhookEndpointSerializer, **ERRORS},
    ),
    destroy=extend_schema(summary="Delete a webhook endpoint", responses={204: None, **ERRORS}),
)
class WebhookEndpointViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    required_scopes = _ADMIN_SCOPES
    serializer_class = serializers.WebhookEndpointSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        return WebhookEndpoint.objects.filter(user=self.request.user)

    @extend_schema(
        summary="Add a webhook endpoint",
        description="The answer holds the whsec_ signing secret, this once. The URL must be "
        "http(s), without credentials, and reach a public address.",
        request=serializers.WebhookEndpointSerializer,
        responses={
            201: serializers.WebhookEndpointSecretSerializer,
            **ERRORS,
        },
    )
    def create(self, request):
        data = serializers.WebhookEndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_endpoint_create(
            user=request.user,
            url=data.validated_data["url"],
            description=data.validated_data.get("description", ""),
        )
        body = serializers.WebhookEndpointSecretSerializer(endpoint, context={"secret": secret})
        return Response(body.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change an endpoint's URL or description, or enable or disable it",
        request=serializers.WebhookEndpointSerializer,
        responses={200: serializers.WebhookEndpointSerializer, **ERRORS},
    )
    def partial_update(self, request, pk=None):
        data = serializers.WebhookEndpointSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(
            endpoint=self.get_object(), **data.validated_data
        )
        return Response(serializers.WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Rotate the signing secret",
        description="Answers the new secret, this once. For NOTIFY_WEBHOOK_ROTATION_HOURS "
        "(24 by default) every message is signed with both, so receivers switch calmly.",
        request=None,
        responses={200: serializers.WebhookEndpointSecretSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        endpoint, secret = services.webhook_endpoint_rotate(endpoint=self.get_object())
        body = serializers.WebhookEndpointSecretSerializer(endpoint, context={"secret": secret})
        return Response(body.data)

    @extend_schema(
        summary="Send a test event",
        request=None,
        responses={202: serializers.DeliverySerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        endpoint = self.get_object()
        if not endpoint.is_active:
            raise InvalidInput("The endpoint is disabled; enable it first (is_active: true).")
        delivery = services.webhook_endpoint_test(endpoint=endpoint)
        return Response(
            serializers.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        summary="Recent deliveries to this endpoint",
        responses={200: serializers.DeliverySerializer(many=True), **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        endpoint = self.get_object()
        queryset = filters.DeliveryFilterSet(
            request.query_params, queryset=Delivery.objects.filter(endpoint=endpoint)
        ).qs
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializers.DeliverySerializer(page, many=True).data)

    @extend_schema(
        summary="Send deliveries again (same webhook-id)",
        description='`{"delivery": id}` sends one delivery again; `{"since": time}` '
        "every failed or dead delivery to this endpoint made since then.",
        request=serializers.ReplayInput,
        responses={202: serializers.ReplayResult, **ERRORS, **error_responses(409)},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        endpoint = self.get_object()
        data = serializers.ReplayInput(data=request.data)
        data.is_valid(raise_exception=True)
        if "delivery" in data.validated_data:
            delivery = Delivery.objects.filter(
                pk=data.validated_data["delivery"], endpoint=endpoint
            ).first()
            if delivery is None:
                raise NotFound("No such delivery to this endpoint.")
            if delivery.status not in DELIVERY_FINISHED:
                raise Conflict(f"The delivery is {delivery.status}; it is on its way already.")
            chosen = Delivery.objects.filter(pk=delivery.pk)
        else:
            chosen = Delivery.objects.filter(
                endpoint=endpoint,
                status__in=[DeliveryStatus.FAILED, DeliveryStatus.DEAD],
                created_at__gte=data.validated_data["since"],
            )
        count = services.deliveries_replay(deliveries=chosen)
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)
