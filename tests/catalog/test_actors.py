"""Only the explicit system actor may act without a user; an anonymous actor (a request
with nobody signed in) is refused by every service that changes the catalog."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from catalog.audit import Actor
from catalog.exceptions import Forbidden
from catalog.services import dataset_create, dataset_update
from tests.api.conftest import CSV
from versioning.models import DatasetVersion, JobSource
from versioning.services import (
    dataset_rollback,
    publish_job_create,
    version_archive,
    version_deprecate,
    version_promote,
    version_restore,
)

pytestmark = pytest.mark.django_db


def anonymous_actor() -> Actor:
    request = RequestFactory().post("/api/v1/datasets/")
    request.user = AnonymousUser()
    return Actor.from_request(request, via="api")


def steward_services(dataset, version):
    from datetime import date

    return {
        "dataset_create": lambda actor: dataset_create(
            organization=dataset.organization, layer="gold", name="other", actor=actor
        ),
        "dataset_update": lambda actor: dataset_update(dataset=dataset, actor=actor, title="x"),
        "publish_job_create": lambda actor: publish_job_create(
            dataset=dataset,
            stream=io.BytesIO(CSV),
            filename="a.csv",
            actor=actor,
            source=JobSource.API,
        ),
        "dataset_rollback": lambda actor: dataset_rollback(
            dataset=dataset, to="1.0.0", reason="x", actor=actor
        ),
        "version_promote": lambda actor: version_promote(version=version, actor=actor),
        "version_deprecate": lambda actor: version_deprecate(
            version=version, message="old", sunset=date(2030, 1, 1), actor=actor
        ),
        "version_archive": lambda actor: version_archive(version=version, actor=actor),
        "version_restore": lambda actor: version_restore(version=version, actor=actor),
    }


SERVICES = [
    "dataset_create",
    "dataset_update",
    "publish_job_create",
    "dataset_rollback",
    "version_promote",
    "version_deprecate",
    "version_archive",
    "version_restore",
]


@pytest.mark.parametrize("service", SERVICES)
def test_an_anonymous_actor_is_refused_by_every_steward_service(dataset, publish, service):
    publish(dataset, CSV)
    version = DatasetVersion.objects.get(dataset=dataset)
    actor = anonymous_actor()
    assert actor.user is None and not actor.is_system
    with pytest.raises(Forbidden, match="Sign in"):
        steward_services(dataset, version)[service](actor)


@pytest.mark.parametrize("service", SERVICES)
def test_an_actor_built_without_a_user_is_not_the_system(dataset, publish, service):
    publish(dataset, CSV)
    version = DatasetVersion.objects.get(dataset=dataset)
    with pytest.raises(Forbidden):
        steward_services(dataset, version)[service](Actor(via="command"))


def test_the_system_actor_may_act_in_any_organisation(dataset):
    updated = dataset_update(dataset=dataset, actor=Actor.system(via="command"), title="New")
    assert updated.title == "New"
