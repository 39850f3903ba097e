"""The token endpoints: make, list, show, revoke.

A caller signs in by session, or by HTTP Basic on these endpoints only (so a script
can get its first token with a password), or with a token that has the admin scope.
Each user sees only their own tokens; anybody else's answer 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response

from catalog.api.access import dataset_for_request
from catalog.api.authentication import BearerTokenAuthentication, PasswordBasicAuthentication
from catalog.api.errors import error_responses
from catalog.api.filters import TokenFilterSet
from catalog.api.serializers import TokenCreatedSerializer, TokenCreateInput, TokenSerializer
from catalog.audit import Actor
from catalog.models import ApiToken, TokenScope
from catalog.tokens import token_create, token_revoke, tokens_of


@extend_schema_view(
    list=extend_schema(
        summary="List your API tokens",
        responses={200: TokenSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    ),
    retrieve=extend_schema(
        summary="Show one of your API tokens",
        responses={200: TokenSerializer, **error_responses(401, 403, 404, 429)},
    ),
    destroy=extend_schema(
        summary="Revoke a token",
        description="It stops working at once; it stays listed with its revocation time.",
        responses={204: None, **error_responses(401, 403, 404, 429)},
    ),
)
class TokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    authentication_classes = [
        BearerTokenAuthentication,
        PasswordBasicAuthentication,
        SessionAuthentication,
    ]
    accepts_basic = True
    required_scopes = {
        "GET": TokenScope.ADMIN,
        "POST": TokenScope.ADMIN,
        "DELETE": TokenScope.ADMIN,
    }
    serializer_class = TokenSerializer
    filterset_class = TokenFilterSet
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return tokens_of(self.request.user)

    @extend_schema(
        summary="Make an API token",
        description=(
            "Sign in by session or HTTP Basic (username and password), or use a token "
            "with the admin scope. The secret is in the answer this once; only its "
            "SHA-256 is kept. With `dataset`, a device token: publish only, to that "
            "dataset only, always expiring; it needs the steward role there."
        ),
        request=TokenCreateInput,
        responses={201: TokenCreatedSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def create(self, request):
        data = TokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        dataset = None
        if "dataset" in fields:
            layer, name = fields["dataset"].split("/")
            dataset = dataset_for_request(
                request, layer=layer, name=name, org=fields.get("organization")
            )
        token, raw = token_create(
            user=request.user,
            name=fields["name"],
            scopes=fields.get("scopes"),
            expires_at=fields.get("expires_at"),
            dataset=dataset,
            actor=Actor.from_request(request, via="api"),
        )
        body = TokenCreatedSerializer(token, context={"raw_token": raw}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        token_revoke(token=self.get_object(), actor=Actor.from_request(request, via="api"))
        return Response(status=status.HTTP_204_NO_CONTENT)
