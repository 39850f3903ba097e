"""The usage API: a dataset's usage, the steward's summary, the COUNTER Dataset Report
and CSV exports of the rollups. Stewards only, of their own organisations; a dataset
the caller may not see answers 404 as everywhere else in the API."""

from __future__ import annotations

from datetime import timedelta

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.access import dataset_for_request
from catalog.api.errors import error_responses
from catalog.exceptions import Forbidden, NotFound
from catalog.models import TokenScope
from catalog.selectors import user_can_steward
from usage import reports, selectors
from usage.api.serializers import (
    DatasetReportQuery,
    DatasetUsageQuery,
    DatasetUsageSerializer,
    ExportQuery,
    SummarySerializer,
)

READ = {"GET": TokenScope.READ}


def _stewarded(request, query: dict):
    """The datasets a report covers: the caller's, narrowed by `organization`/`dataset`."""
    if not request.user.is_authenticated:
        raise exceptions.NotAuthenticated()
    if not selectors.stewarded_organizations(request.user).exists():
        raise Forbidden("Usage reports are for stewards: you steward no organisation.")
    datasets = selectors.stewarded_datasets(request.user)
    if query.get("organization"):
        datasets = datasets.filter(organization__slug=query["organization"])
    if query.get("dataset"):
        layer, name = query["dataset"].split("/")
        datasets = datasets.filter(layer=layer, name=name)
        if not datasets.exists():
            raise NotFound(f"No dataset {query['dataset']!r} that you steward.")
    return datasets


class DatasetUsageView(APIView):
    required_scopes = READ

    @extend_schema(
        summary="A dataset's usage over a window",
        description="Stewards of its organisation. COUNTER downloads (requests) and "
        "investigations, API calls, exports, unique users, bytes, errors and p95 per "
        "period, and reads per version.",
        parameters=[DatasetUsageQuery],
        responses={200: DatasetUsageSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request, **kwargs):
        query = DatasetUsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        days, granularity = query.validated_data["window"], query.validated_data["granularity"]
        dataset = dataset_for_request(
            request, layer=kwargs["layer"], name=kwargs["name"], org=kwargs.get("org")
        )
        if not user_can_steward(request.user, dataset.organization):
            raise Forbidden(f"Usage of {dataset.path} is for the stewards of its organisation.")
        end = selectors.today()
        start = end - timedelta(days=days - 1)
        series = selectors.dataset_usage_series(
            dataset=dataset, start=start, end=end, granularity=granularity
        )
        totals = {name: sum(row[name] for row in series) for name in selectors.SERIES_FIELDS}
        versions = [
            {"version": v["version__version"], "status": v["version__status"], **v}
            for v in selectors.dataset_version_reads(dataset=dataset, start=start, end=end)
        ]
        for entry in versions:
            entry.pop("version__version"), entry.pop("version__status")
        return Response(
            {
                "dataset": dataset.path,
                "organization": dataset.organization.slug,
                "window": f"{days}d",
                "granularity": granularity,
                "start": start,
                "end": end,
                "totals": totals,
                "series": series,
                "versions": versions,
            }
        )


class UsageSummaryView(APIView):
    required_scopes = READ

    @extend_schema(
        summary="Today's usage of the datasets you steward",
        responses={200: SummarySerializer, **error_responses(401, 403, 429)},
    )
    def get(self, request):
        _stewarded(request, {})
        end = selectors.today()
        top = selectors.top_datasets(
            user=request.user, start=end - timedelta(days=6), end=end, limit=10
        )
        return Response(
            {
                **selectors.system_summary(user=request.user).as_dict(),
                "top_datasets_7d": [
                    {
                        "dataset": f"{row['dataset__layer']}/{row['dataset__name']}",
                        "organization": row["dataset__organization__slug"],
                        "downloads": row["downloads"],
                        "api_calls": row["api_calls"],
                    }
                    for row in top
                ],
            }
        )


class DatasetReportView(APIView):
    required_scopes = READ

    @extend_schema(
        summary="COUNTER Dataset Report (SUSHI JSON)",
        description="The COUNTER Code of Practice for Research Data's Dataset Report "
        "(release rd1) for the datasets you steward: total and unique investigations and "
        "requests per month, access methods regular and machine, robots excluded.",
        parameters=[DatasetReportQuery],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request):
        query = DatasetReportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fields = query.validated_data
        datasets = list(_stewarded(request, fields))
        filters = {
            k.replace("_", "-"): str(v)
            for k, v in fields.items()
            if k in ("dataset", "organization")
        }
        return Response(
            reports.dataset_report(
                datasets=datasets,
                begin=fields["begin_date"],
                end=fields["end_date"],
                filters=filters,
            )
        )


class UsageExportView(APIView):
    required_scopes = READ

    @extend_schema(
        summary="CSV export of the daily rollups",
        description="`table`: datasets (default), counter, versions or users; streamed.",
        parameters=[ExportQuery],
        responses={(200, "text/csv"): OpenApiTypes.STR, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request):
        query = ExportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fields = query.validated_data
        table = fields["table"]
        model, _ = reports.EXPORTS[table]
        rows = model.objects.filter(day__gte=fields["begin_date"], day__lte=fields["end_date"])
        if table == "users":
            _stewarded(request, {})
            rows = rows.filter(selectors.users_visible_q(request.user))
        else:
            rows = rows.filter(dataset__in=_stewarded(request, fields))
        name = f"usage-{table}-{fields['begin_date']}-{fields['end_date']}.csv"
        return StreamingHttpResponse(
            reports.export_rows(table=table, rows=rows),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
