"""The OpenAPI schema describes the API, and the API keeps to it: schemathesis generates
requests for every operation from the schema and checks that none gets a 500 and that
every response matches what the schema promises."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.models import Visibility
from catalog.services import dataset_create
from tests.api.conftest import CSV

pytestmark = pytest.mark.django_db


def test_the_schema_and_the_docs_are_served(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/datasets/{layer}/{name}/rows/" in paths
    assert "/api/v1/tokens/" in paths
    rows = paths["/api/v1/datasets/{layer}/{name}/rows/"]["get"]
    assert {p["name"] for p in rows["parameters"]} >= {"limit", "offset", "columns", "format"}
    assert {"400", "401", "403", "404", "429"} <= set(rows["responses"])
    docs = api.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


@pytest.fixture
def within_the_test_transaction():
    """As Django's test client does: the test's transaction outlives each request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_token(acme, steward, system, publish, make_token):
    """Data for the generated requests to find: a published dataset of each visibility."""
    for name, visibility in (("txn_daily", Visibility.PRIVATE), ("open", Visibility.PUBLIC)):
        dataset = dataset_create(
            organization=acme, layer="gold", name=name, actor=system, visibility=visibility
        )
        publish(dataset, CSV)
    return make_token(steward, scopes=["read", "publish", "admin"])


schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())


@schema.parametrize()
@hypothesis_settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@override_settings(API_RATES={"api": "100000/min", "signed_url": "100000/min"})
def test_no_generated_request_gets_a_500_or_an_answer_outside_the_schema(
    case, fuzz_token, within_the_test_transaction
):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_token}"},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            content_type_conformance,
            status_code_conformance,
        ],
    )


def test_the_schema_answers_json_for_format_json_and_yaml_by_default(api):
    as_json = api.get("/api/v1/schema/?format=json")
    assert as_json.status_code == 200
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert as_json.json()["openapi"].startswith("3.")
    as_yaml = api.get("/api/v1/schema/")
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert as_yaml.content.startswith(b"openapi:")


def test_the_schema_declares_anonymous_reads_minimum_scopes_and_page_size(api):
    schema = api.get("/api/v1/schema/?format=json").json()
    listing = schema["paths"]["/api/v1/datasets/"]
    assert {} in listing["get"]["security"]
    assert {} not in listing["post"]["security"]
    assert {} not in schema["paths"]["/api/v1/tokens/"]["get"]["security"]
    scopes = schema["components"]["schemas"]["TokenCreateInputRequest"]["properties"]["scopes"]
    assert scopes["minItems"] == 1
    page_size = next(p for p in listing["get"]["parameters"] if p["name"] == "page_size")
    assert page_size["schema"]["minimum"] == 1
