"""Deciding which versions go to which regions: the triggers.

- **Immediate** rules act on `version.published` and `version.rolled_back` (outbox
  handlers): the version now current must exist in every target.
- **Scheduled** rules carry `next_run_at`; the periodic tick claims a due rule by moving
  that time forward with a conditional update (so two ticks never both run it) and
  queues the current version of every dataset it matches.
- **On demand**: a steward asks for a dataset (API, admin action) or runs a rule (admin
  action).

Planning is idempotent: a version already verified in a region is left alone (its
region manifest is refreshed, which a rollback needs), a pending one is not queued
twice, and an expired or permanently failed one is queued again.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.audit import Actor, audit_record
from catalog.exceptions import Forbidden, InvalidInput, NotFound
from catalog.models import Dataset
from catalog.selectors import user_can_steward
from replication.models import Policy, Region, Replica, ReplicaStatus, ReplicationRule
from replication.services.copies import replicas_dispatch
from replication.services.manifests import region_manifest_generate
from replication.services.regions import regions_by_codes
from replication.services.rules import cron_next, rule_datasets, rule_matches
from versioning.models import DatasetVersion, VersionStatus


def replicas_plan(
    *, version: DatasetVersion, targets: dict[Region, ReplicationRule | None]
) -> list[Replica]:
    """Makes sure `version` is (or is being) copied to each target region; returns the
    replicas queued now. Call inside a transaction; copies are sent after commit."""
    if version.status in (VersionStatus.DRAFT, VersionStatus.ARCHIVED):
        return []
    now = timezone.now()
    existing = {r.region_id: r for r in Replica.objects.filter(version=version)}
    queued: list[Replica] = []
    for region, rule in targets.items():
        if region.is_primary or not region.is_active:
            continue
        bandwidth = rule.bandwidth_mbps if rule else settings.REPLICATION_DEFAULT_BANDWIDTH_MBPS
        replica = existing.get(region.pk)
        if replica is None:
            replica = Replica.objects.create(
                version=version,
                region=region,
                rule=rule,
                key=version.key,
                size_bytes=version.size_bytes,
                bandwidth_mbps=bandwidth,
                next_attempt_at=now,
            )
            queued.append(replica)
        elif replica.status == ReplicaStatus.EXPIRED or (
            replica.status == ReplicaStatus.FAILED and replica.next_attempt_at is None
        ):
            Replica.objects.filter(pk=replica.pk).update(
                status=ReplicaStatus.PENDING,
                rule=rule,
                bandwidth_mbps=bandwidth,
                attempts=0,
                next_attempt_at=now,
                queued_at=now,
                expired_at=None,
                failure_recorded_at=None,
                late_recorded_at=None,
                sha256_measured="",
            )
            queued.append(replica)
        elif replica.status == ReplicaStatus.FAILED:
            # Backing off after temporary failures: asked again, it goes now.
            Replica.objects.filter(pk=replica.pk).update(next_attempt_at=now)
            queued.append(replica)
        elif replica.status == ReplicaStatus.VERIFIED:
            region_manifest_generate(region=region, organization=version.dataset.organization)
    replicas_dispatch([r.pk for r in queued])
    return queued


def _enabled_rules(*, organization_id: int, policies: tuple[str, ...]):
    return ReplicationRule.objects.filter(
        organization_id=organization_id, enabled=True, policy__in=policies
    )


def rule_targets(*, dataset: Dataset, policies: tuple[str, ...]) -> dict[Region, ReplicationRule]:
    """Each target region of the enabled rules of `policies` matching `dataset`, with the
    highest-priority rule for it (its bandwidth and retention apply)."""
    rules = (
        _enabled_rules(organization_id=dataset.organization_id, policies=policies)
        .prefetch_related("regions")
        .order_by("-priority", "pk")
    )
    targets: dict[Region, ReplicationRule] = {}
    for rule in rules:
        if not rule_matches(rule, dataset):
            continue
        for region in rule.regions.all():
            targets.setdefault(region, rule)
    return targets


def version_replicate_by_rules(
    *, version_id: int, policies: tuple[str, ...], organization_id: int | None = None
) -> list[Replica]:
    """The outbox handlers' service: queue `version` for the matching rules' targets.
    Given the version's `organization_id` (the event carries it), an organisation with
    no enabled rule of `policies` costs one query: the version is not read."""
    if (
        organization_id is not None
        and not _enabled_rules(organization_id=organization_id, policies=policies).exists()
    ):
        return []
    version = (
        DatasetVersion.objects.select_related("dataset__organization").filter(pk=version_id).first()
    )
    if version is None:
        return []
    targets = rule_targets(dataset=version.dataset, policies=policies)
    if not targets:
        # No rule copies it anywhere: nothing to plan, no transaction (every publish of
        # an organisation without rules comes through here).
        return []
    with transaction.atomic():
        return replicas_plan(version=version, targets=targets)


def _current(dataset: Dataset) -> DatasetVersion | None:
    return (
        DatasetVersion.objects.select_related("dataset__organization")
        .filter(dataset=dataset, is_current=True)
        .first()
    )


def replication_request(
    *, dataset: Dataset, regions: list[str] | None, actor: Actor
) -> list[Replica]:
    """On demand: copy the dataset's current version to `regions` (codes) now, or, with
    None, to every target of the rules matching it. Stewards only; audited."""
    user = actor.user
    if user is not None and not user_can_steward(user, dataset.organization):
        raise Forbidden(f"Only stewards of {dataset.organization.slug} may replicate it.")
    version = _current(dataset)
    if version is None:
        raise NotFound(f"Nothing of {dataset.path} has been published yet.")
    rules = rule_targets(dataset=dataset, policies=tuple(Policy.values))
    if regions is None:
        targets = dict(rules)
        if not targets:
            raise InvalidInput(
                f"No replication rule matches {dataset.path}: name the regions to copy it to."
            )
    else:
        targets = {region: rules.get(region) for region in regions_by_codes(regions)}
    with transaction.atomic():
        queued = replicas_plan(version=version, targets=targets)
        audit_record(
            actor=actor,
            action="replication.request",
            obj=version,
            organization=dataset.organization,
            details={"regions": sorted(r.code for r in targets), "queued": len(queued)},
        )
    return queued


def rule_run(*, rule: ReplicationRule, actor: Actor | None = None) -> list[Replica]:
    """Queues the current version of every dataset the rule matches to its targets."""
    queued: list[Replica] = []
    targets = [r for r in rule.regions.all() if r.is_active and not r.is_primary]
    with transaction.atomic():
        for dataset in rule_datasets(rule):
            version = _current(dataset)
            if version is not None:
                queued += replicas_plan(version=version, targets=dict.fromkeys(targets, rule))
        ReplicationRule.objects.filter(pk=rule.pk).update(last_run_at=timezone.now())
        if actor is not None:
            audit_record(
                actor=actor,
                action="replication_rule.run",
                obj=rule,
                organization=rule.organization,
                details={"queued": len(queued)},
            )
    return queued


def rules_run_due() -> int:
    """Runs each scheduled rule whose time has come, once, and sets its next time."""
    now = timezone.now()
    ran = 0
    due = ReplicationRule.objects.filter(
        enabled=True, policy=Policy.SCHEDULED, next_run_at__lte=now
    ).select_related("organization")
    for rule in due:
        following = cron_next(rule.cron, rule.timezone, after=now)
        claimed = ReplicationRule.objects.filter(pk=rule.pk, next_run_at=rule.next_run_at).update(
            next_run_at=following, last_run_at=now
        )
        if claimed:
            rule_run(rule=rule)
            ran += 1
    return ran


def rules_count_datasets(rules: list[ReplicationRule]) -> dict[int, int]:
    """How many datasets each rule matches now (0 is shown as 'matches nothing')."""
    org_ids = {r.organization_id for r in rules}
    datasets = list(
        Dataset.objects.filter(organization_id__in=org_ids).select_related("organization")
    )
    return {rule.pk: sum(1 for d in datasets if rule_matches(rule, d)) for rule in rules}
