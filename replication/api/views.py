"""The replication API: regions (read), rules (stewards write), replicas and copy runs
(read, filterable), lag, the monthly cost report, and on-demand replication of a dataset.

Views are thin: an input serializer checks the shape, the services check the meaning
and the steward role, and errors come out in the API's one shape. Rules, replicas,
runs and costs of organisations the caller does not belong to answer 404 (replicas
and runs follow the datasets the caller may see).
"""

from __future__ import annotations

from datetime import date

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.access import dataset_for_request, visible_datasets
from catalog.api.errors import error_responses
from catalog.audit import Actor
from catalog.exceptions import Forbidden, InvalidInput, NotFound
from catalog.models import Organization, TokenScope
from catalog.selectors import organizations_of, organizations_stewarded_by
from replication import selectors
from replication.api.filters import CopyRunFilterSet, ReplicaFilterSet, RuleFilterSet
from replication.api.serializers import (
    CopyRunSerializer,
    CostReportSerializer,
    CostsQuery,
    RegionLagSerializer,
    RegionSerializer,
    ReplicaSerializer,
    ReplicateInput,
    ReplicateSerializer,
    RuleInput,
    RuleSerializer,
    RuleUpdateInput,
)
from replication.models import CopyRun, Region, Replica, ReplicationRule
from replication.services import (
    replication_request,
    rule_create,
    rule_delete,
    rule_update,
    rules_count_datasets,
)
from versioning.models import DatasetVersion

READ = {"GET": TokenScope.READ}
READ_ERRORS = error_responses(400, 401, 403, 404, 429)


def _regions_named(codes: list[str]) -> list[Region]:
    found = {r.code: r for r in Region.objects.filter(code__in=codes)}
    unknown = [code for code in codes if code not in found]
    if unknown:
        raise InvalidInput(
            f"Unknown region(s): {', '.join(unknown)}.",
            details={
                "regions": unknown,
                "valid": list(Region.objects.values_list("code", flat=True)),
            },
        )
    return [found[code] for code in codes]


@extend_schema_view(
    list=extend_schema(
        summary="List regions", responses={200: RegionSerializer(many=True), **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="Show a region", responses={200: RegionSerializer, **READ_ERRORS}
    ),
)
class RegionViewSet(viewsets.ReadOnlyModelViewSet):
    """Where datasets are stored: the primary and the replication targets."""

    required_scopes = READ
    serializer_class = RegionSerializer
    queryset = Region.objects.all()
    lookup_field = "code"
    lookup_value_regex = r"[a-z0-9-]{1,64}"
    filterset_fields = ["is_active", "is_primary"]


@extend_schema_view(
    list=extend_schema(
        summary="List replication rules", responses={200: RuleSerializer(many=True), **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="Show a replication rule", responses={200: RuleSerializer, **READ_ERRORS}
    ),
    destroy=extend_schema(
        summary="Delete a replication rule (stewards)", responses={204: None, **READ_ERRORS}
    ),
)
class RuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Rules of the caller's organisations; stewards create, change and delete them."""

    required_scopes = {
        "GET": TokenScope.READ,
        "POST": TokenScope.ADMIN,
        "PATCH": TokenScope.ADMIN,
        "DELETE": TokenScope.ADMIN,
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    serializer_class = RuleSerializer
    filterset_class = RuleFilterSet
    lookup_value_regex = r"[0-9]{1,18}"
    lookup_url_kwarg = "rule_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ReplicationRule.objects.none()
        return (
            ReplicationRule.objects.filter(organization__in=organizations_of(self.request.user))
            .select_related("organization")
            .prefetch_related("regions")
            .distinct()
        )

    def _render(self, rules, **kwargs):
        rules = list(rules)
        context = {**self.get_serializer_context(), "matches": rules_count_datasets(rules)}
        return RuleSerializer(rules, context=context, **kwargs).data

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._render(page, many=True))

    def retrieve(self, request, *args, **kwargs):
        return Response(self._render([self.get_object()], many=True)[0])

    def _organization(self, slug: str | None) -> Organization:
        stewarded = organizations_stewarded_by(self.request.user)
        if slug:
            organization = organizations_of(self.request.user).filter(slug=slug).first()
            if organization is None:
                raise NotFound(f"No organisation {slug!r}.")
            if not stewarded.filter(pk=organization.pk).exists():
                raise Forbidden(f"Only stewards of {slug} manage its replication rules.")
            return organization
        mine = list(stewarded[:2])
        if not mine:
            raise Forbidden("Only stewards manage replication rules.")
        if len(mine) > 1:
            raise InvalidInput("You steward several organisations: name one in `organization`.")
        return mine[0]

    @extend_schema(
        summary="Create a replication rule (stewards)",
        request=RuleInput,
        responses={201: RuleSerializer, **READ_ERRORS},
    )
    def create(self, request):
        data = RuleInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        organization = self._organization(fields.pop("organization", None))
        regions = _regions_named(fields.pop("regions"))
        rule = rule_create(
            organization=organization,
            regions=regions,
            actor=Actor.from_request(request, via="api"),
            **fields,
        )
        return Response(self._render([rule], many=True)[0], status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a replication rule (stewards)",
        request=RuleUpdateInput,
        responses={200: RuleSerializer, **READ_ERRORS},
    )
    def partial_update(self, request, rule_id=None):
        rule = self.get_object()
        data = RuleUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields.pop("organization", None)
        regions = _regions_named(fields.pop("regions")) if "regions" in fields else None
        rule = rule_update(
            rule=rule, actor=Actor.from_request(request, via="api"), regions=regions, **fields
        )
        return Response(self._render([rule], many=True)[0])

    def destroy(self, request, rule_id=None):
        rule_delete(rule=self.get_object(), actor=Actor.from_request(request, via="api"))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="List replicas", responses={200: ReplicaSerializer(many=True), **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="Show a replica", responses={200: ReplicaSerializer, **READ_ERRORS}
    ),
)
class ReplicaViewSet(viewsets.ReadOnlyModelViewSet):
    """Each version's copy in each region, of the datasets the caller may see."""

    anonymous_read = True
    required_scopes = READ
    serializer_class = ReplicaSerializer
    filterset_class = ReplicaFilterSet
    lookup_value_regex = r"[0-9]{1,18}"
    lookup_url_kwarg = "replica_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Replica.objects.none()
        return Replica.objects.filter(
            version__dataset__in=visible_datasets(self.request)
        ).select_related("version__dataset__organization", "region")


@extend_schema_view(
    list=extend_schema(
        summary="List copy runs", responses={200: CopyRunSerializer(many=True), **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="Show a copy run", responses={200: CopyRunSerializer, **READ_ERRORS}
    ),
)
class CopyRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Every attempt at a copy: bytes, duration, throughput, outcome."""

    anonymous_read = True
    required_scopes = READ
    serializer_class = CopyRunSerializer
    filterset_class = CopyRunFilterSet
    lookup_value_regex = r"[0-9]{1,18}"
    lookup_url_kwarg = "run_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return CopyRun.objects.none()
        return CopyRun.objects.filter(
            replica__version__dataset__in=visible_datasets(self.request)
        ).select_related("replica__version__dataset", "source_region", "target_region")


def _member_organizations(request, slug: str | None):
    if not request.user.is_authenticated:
        raise exceptions.NotAuthenticated()
    organizations = organizations_of(request.user)
    if slug:
        organizations = organizations.filter(slug=slug)
        if not organizations.exists():
            raise NotFound(f"No organisation {slug!r}.")
    return organizations


class CostsView(APIView):
    required_scopes = READ

    @extend_schema(
        summary="The monthly replication cost per dataset and region",
        description="Transfer (GB moved x the source region's price) plus storage "
        "(GB-months held x the target region's price, prorated by day), for your "
        "organisations.",
        parameters=[CostsQuery],
        responses={200: CostReportSerializer, **READ_ERRORS},
    )
    def get(self, request):
        query = CostsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fields = query.validated_data
        month = (
            date.fromisoformat(f"{fields['month']}-01")
            if "month" in fields
            else date.today().replace(day=1)
        )
        organizations = _member_organizations(request, fields.get("organization"))
        rows = selectors.cost_report(organizations=organizations, month=month)
        body = {
            "month": f"{month:%Y-%m}",
            "total_cost_usd": sum((r.as_dict()["total_cost_usd"] for r in rows), start=0),
            "rows": [r.as_dict() for r in rows],
        }
        return Response(CostReportSerializer(body).data)


class LagView(APIView):
    required_scopes = READ

    @extend_schema(
        summary="Replication lag per target region",
        description="Copies and bytes waiting, the oldest wait, and over 30 days the "
        "share of copies verified within 15 minutes of publishing.",
        responses={200: RegionLagSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request):
        organizations = _member_organizations(request, request.query_params.get("organization"))
        lags = selectors.region_lags(organizations=organizations)
        return Response(RegionLagSerializer(lags, many=True).data)


class ReplicateView(APIView):
    required_scopes = {"POST": TokenScope.PUBLISH}

    @extend_schema(
        summary="Replicate a dataset's current version now (stewards)",
        request=ReplicateInput,
        responses={202: ReplicateSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request, layer: str, name: str, org: str | None = None):
        data = ReplicateInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_for_request(request, layer=layer, name=name, org=org)
        queued = replication_request(
            dataset=dataset,
            regions=data.validated_data.get("regions"),
            actor=Actor.from_request(request, via="api"),
        )
        current = DatasetVersion.objects.get(dataset=dataset, is_current=True)
        replicas = Replica.objects.filter(version=current).select_related(
            "version__dataset__organization", "region"
        )
        body = {
            "dataset": dataset.path,
            "version": current.version,
            "queued": [r for r in replicas if r.pk in {q.pk for q in queued}],
            "replicas": list(replicas),
        }
        return Response(ReplicateSerializer(body).data, status=status.HTTP_202_ACCEPTED)
