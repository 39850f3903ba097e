"""Replication rules: checking, saving, and matching them against datasets.

Every door (admin, API, demo) saves a rule through `rule_create`/`rule_update`, so the
same checks hold everywhere: a well-formed glob, a cron expression croniter can parse
and a time zone the system knows, a bandwidth and retention in range, targets that are
active non-primary regions whose credential variables are set on this machine.
"""

from __future__ import annotations

import re
from datetime import datetime
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.utils import timezone

from catalog.audit import Actor, audit_record
from catalog.exceptions import Forbidden, InvalidInput
from catalog.models import Dataset, Organization
from catalog.selectors import user_can_steward
from replication.engine import region_missing_credentials
from replication.models import (
    MAX_BANDWIDTH_MBPS,
    Policy,
    Region,
    ReplicationRule,
)
from replication.models import (
    RULE_FIELDS as FIELDS,
)

_SEGMENT = re.compile(r"^[a-z0-9_*?!\[\]-]+$")


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a glob over `<org>/<layer>/<name>`, or None."""
    parts = pattern.split("/")
    if len(parts) != 3:
        return (
            f"{pattern!r} is not a glob over <org>/<layer>/<name>: it needs exactly three "
            "parts separated by '/', e.g. 'scout/gold/*'."
        )
    for part in parts:
        if not part or not _SEGMENT.match(part):
            return (
                f"{pattern!r}: each part uses lower-case letters, digits, '-', '_' and the "
                "wildcards '*', '?' and '[...]'."
            )
        depth = 0
        for char in part:
            depth += {"[": 1, "]": -1}.get(char, 0)
            if depth not in (0, 1):
                return f"{pattern!r}: brackets do not nest and must be balanced."
        if depth:
            return f"{pattern!r}: a '[' is never closed."
    return None


def cron_next(cron: str, tz: str, *, after: datetime) -> datetime:
    """The next moment `cron` fires after `after`, read in time zone `tz`."""
    from croniter import croniter

    local = after.astimezone(ZoneInfo(tz))
    return croniter(cron, local).get_next(datetime).astimezone(ZoneInfo("UTC"))


def _check(
    *, organization: Organization, fields: dict, regions: list[Region] | None
) -> dict[str, str]:
    from croniter import croniter

    errors: dict[str, str] = {}
    problem = pattern_problem(fields.get("pattern", ""))
    if problem:
        errors["pattern"] = problem
    policy = fields.get("policy", Policy.IMMEDIATE)
    if policy not in Policy.values:
        errors["policy"] = f"Policy is one of {', '.join(Policy.values)}."
    tz = fields.get("timezone") or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = f"Unknown time zone {tz!r}; use a name such as 'Asia/Manila'."
    cron = (fields.get("cron") or "").strip()
    if policy == Policy.SCHEDULED and not cron:
        errors["cron"] = "A scheduled rule needs a cron expression, e.g. '0 2 * * *'."
    elif cron and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
        errors["cron"] = (
            f"{cron!r} is not a cron expression: five fields, minute hour day-of-month "
            "month day-of-week, e.g. '0 2 * * *'."
        )
    bandwidth = fields.get("bandwidth_mbps", 100)
    if not isinstance(bandwidth, int) or isinstance(bandwidth, bool):
        errors["bandwidth_mbps"] = "Bandwidth is a whole number of Mbps."
    elif not 1 <= bandwidth <= MAX_BANDWIDTH_MBPS:
        errors["bandwidth_mbps"] = (
            f"Bandwidth must be 1 to {MAX_BANDWIDTH_MBPS:,} Mbps, not {bandwidth:,}."
        )
    retention = fields.get("retention_days", 90)
    if not isinstance(retention, int) or isinstance(retention, bool) or retention < 1:
        errors["retention_days"] = "Retention must be at least one day."
    if regions is not None:
        if not regions:
            errors["regions"] = "Name at least one target region."
        problems = []
        for region in regions:
            if region.is_primary:
                problems.append(f"{region.code} is the primary region, which holds every version")
            elif not region.is_active:
                problems.append(f"{region.code} is inactive")
            else:
                missing = region_missing_credentials(region)
                if missing:
                    problems.append(
                        f"{region.code}'s credential variable(s) {', '.join(missing)} are not set"
                    )
        if problems:
            errors["regions"] = "Cannot replicate to " + "; ".join(problems) + "."
    return errors


def rule_validate(
    *, organization: Organization, fields: dict, regions: list[Region] | None
) -> None:
    """Raises InvalidInput with one message per bad field."""
    errors = _check(organization=organization, fields=fields, regions=regions)
    if errors:
        raise InvalidInput(" ".join(errors.values()), details=errors)


def _require_steward(actor: Actor, organization: Organization) -> None:
    user = actor.user
    if user is not None and not user_can_steward(user, organization):
        raise Forbidden(f"Only stewards of {organization.slug} manage its replication rules.")


def _schedule(rule: ReplicationRule) -> None:
    if rule.policy == Policy.SCHEDULED and rule.enabled:
        rule.next_run_at = cron_next(rule.cron, rule.timezone, after=timezone.now())
    else:
        rule.next_run_at = None


def rule_create(
    *, organization: Organization, regions: list[Region], actor: Actor, **fields
) -> ReplicationRule:
    _require_steward(actor, organization)
    fields = {k: v for k, v in fields.items() if k in FIELDS}
    rule_validate(organization=organization, fields=fields, regions=regions)
    rule = ReplicationRule(organization=organization, **fields)
    rule.cron = rule.cron.strip()
    user = actor.user if getattr(actor.user, "pk", None) else None
    rule.created_by = user
    _schedule(rule)
    with transaction.atomic():
        rule.save()
        rule.regions.set(regions)
        audit_record(
            actor=actor,
            action="replication_rule.create",
            obj=rule,
            organization=organization,
            details={**fields, "regions": [r.code for r in regions]},
        )
    return rule


def rule_update(
    *, rule: ReplicationRule, actor: Actor, regions: list[Region] | None = None, **fields
) -> ReplicationRule:
    _require_steward(actor, rule.organization)
    changes = {k: v for k, v in fields.items() if k in FIELDS}
    merged = {f: getattr(rule, f) for f in FIELDS} | changes
    targets = list(rule.regions.all()) if regions is None else regions
    rule_validate(organization=rule.organization, fields=merged, regions=targets)
    for field, value in changes.items():
        setattr(rule, field, value)
    rule.cron = rule.cron.strip()
    _schedule(rule)
    with transaction.atomic():
        rule.save()
        if regions is not None:
            rule.regions.set(regions)
        audit_record(
            actor=actor,
            action="replication_rule.change",
            obj=rule,
            organization=rule.organization,
            details={**changes, **({"regions": [r.code for r in regions]} if regions else {})},
        )
    return rule


def rule_delete(*, rule: ReplicationRule, actor: Actor) -> None:
    _require_steward(actor, rule.organization)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="replication_rule.delete",
            obj=rule,
            organization=rule.organization,
            details={"pattern": rule.pattern},
        )
        rule.delete()


def dataset_address(dataset: Dataset) -> str:
    return f"{dataset.organization.slug}/{dataset.layer}/{dataset.name}"


def rule_matches(rule: ReplicationRule, dataset: Dataset) -> bool:
    return dataset.organization_id == rule.organization_id and fnmatchcase(
        dataset_address(dataset), rule.pattern
    )


def rule_datasets(rule: ReplicationRule) -> list[Dataset]:
    """The organisation's datasets the rule's glob matches (none is allowed)."""
    datasets = Dataset.objects.filter(organization=rule.organization).select_related("organization")
    return [d for d in datasets if rule_matches(rule, d)]
