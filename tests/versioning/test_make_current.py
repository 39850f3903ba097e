"""One service makes a version current (publish, promote and rollback all call it), and
one value carries what a publisher asked for."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import transaction

from catalog.exceptions import Conflict
from catalog.models import AuditEntry, DomainEvent
from tests.versioning.conftest import base_csv
from versioning.models import DatasetVersion, Manifest, VersionStatus
from versioning.options import PublishOptions
from versioning.services import dataset_rollback, version_make_current
from versioning.services.lifecycle import version_promote

pytestmark = pytest.mark.django_db


def test_publish_options_are_one_frozen_value_with_the_callers_field_names():
    options = PublishOptions.from_fields(
        requested_version=" 1.2.0 ", note="n", allow_breaking=True, inputs="gold/a@1.0.0"
    )
    assert options == PublishOptions(
        version="1.2.0", note="n", allow_breaking=True, draft=False, inputs=("gold/a@1.0.0",)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.version = "2.0.0"
    assert options.job_fields()["inputs"] == ["gold/a@1.0.0"]


def test_the_options_a_job_was_created_with_reach_the_pipeline(dataset, publish_with):
    job = publish_with(
        dataset, base_csv(), options=PublishOptions(version="0.3.0", note="First cut", draft=True)
    )
    assert job.options == PublishOptions(version="0.3.0", note="First cut", draft=True)
    version = job.version
    assert (version.version, version.note, version.status) == ("0.3.0", "First cut", "draft")


def test_publish_promote_and_rollback_each_make_one_manifest_and_record_their_events(
    dataset, publish_with, system
):
    first = publish_with(dataset, base_csv()).version
    draft = publish_with(dataset, base_csv(units=[4, 5, 6]), draft=True).version
    counts = []
    for change in (
        lambda: version_promote(version=draft, actor=system),
        lambda: dataset_rollback(dataset=dataset, to=first, reason="Back", actor=system),
    ):
        manifests, events = Manifest.objects.count(), DomainEvent.objects.count()
        change()
        counts.append((Manifest.objects.count() - manifests, DomainEvent.objects.count() - events))
        assert DatasetVersion.objects.filter(dataset=dataset, is_current=True).count() == 1
    # promote: manifest.generated, version.promoted, version.published; rollback: two.
    assert counts == [(1, 3), (1, 2)]
    assert DatasetVersion.objects.get(dataset=dataset, is_current=True).pk == first.pk
    assert AuditEntry.objects.filter(action="version.rollback").count() == 1


def test_making_current_refuses_a_version_that_is_not_active_and_changes_nothing(
    dataset, publish_with, system
):
    current = publish_with(dataset, base_csv()).version
    draft = publish_with(dataset, base_csv(units=[4, 5, 6]), draft=True).version
    assert draft.status == VersionStatus.DRAFT
    arguments = dict(
        version=draft, previous=current, actor=system, action="x", topics=(), payload={}, details={}
    )
    with pytest.raises(Conflict, match="not active"), transaction.atomic():
        version_make_current(**arguments)
    assert DatasetVersion.objects.get(dataset=dataset, is_current=True).pk == current.pk


def test_a_refusal_changes_nothing_even_for_a_caller_that_goes_on_and_commits(
    dataset, publish_with, system
):
    current = publish_with(dataset, base_csv()).version
    draft = publish_with(dataset, base_csv(units=[4, 5, 6]), draft=True).version
    with transaction.atomic():
        with pytest.raises(Conflict, match="not active"):
            version_make_current(
                version=draft,
                previous=current,
                actor=system,
                action="x",
                topics=(),
                payload={},
                details={},
            )
        assert DatasetVersion.objects.get(dataset=dataset, is_current=True).pk == current.pk
    assert DatasetVersion.objects.get(dataset=dataset, is_current=True).pk == current.pk


def test_making_current_costs_two_updates_and_no_savepoint(
    dataset, publish_with, system, django_assert_num_queries
):
    current = publish_with(dataset, base_csv()).version
    draft = publish_with(dataset, base_csv(units=[4, 5, 6]), draft=True).version
    DatasetVersion.objects.filter(pk=draft.pk).update(status=VersionStatus.ACTIVE)
    draft = DatasetVersion.objects.select_related("dataset__organization").get(pk=draft.pk)
    # The two updates, the dataset touched, the manifest with its organisation locked
    # (3), two events with their deliveries (4) and the audit entry.
    with transaction.atomic(), django_assert_num_queries(11) as captured:
        version_make_current(
            version=draft,
            previous=current,
            actor=system,
            action="x",
            topics=("version.promoted",),
            payload={},
            details={},
        )
    assert not any("SAVEPOINT" in q["sql"] for q in captured.captured_queries)
    assert DatasetVersion.objects.get(dataset=dataset, is_current=True).pk == draft.pk
