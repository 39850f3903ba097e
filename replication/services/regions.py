"""Regions: checking them, and finding the primary and the targets."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog.audit import Actor, audit_record
from catalog.exceptions import InvalidInput, NotFound
from replication.models import ENV_NAME_PATTERN, Region


def _errors_of(exc: ValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            field: [m for e in errors for m in e.messages]
            for field, errors in exc.error_dict.items()
        }
    return {"__all__": exc.messages}


def region_validate(region: Region) -> None:
    """Raises InvalidInput naming each field that is wrong (the model's constraints,
    with their messages, plus what a constraint cannot say)."""
    errors: dict[str, list[str]] = {}
    try:
        region.full_clean()
    except ValidationError as exc:
        errors.update(_errors_of(exc))
    for field in ("access_key_env", "secret_key_env"):
        value = getattr(region, field)
        if value and not re.match(ENV_NAME_PATTERN, value):
            errors.setdefault(field, []).append(
                f"{value!r} is not an environment variable name (letters, digits and _)."
            )
    if not region.is_primary and not (region.bucket or region.local_path):
        errors.setdefault("bucket", []).append(
            "A target region needs a bucket (S3) or a local folder (embedded mode)."
        )
    if errors:
        message = " ".join(m for messages in errors.values() for m in messages)
        raise InvalidInput(message, details=errors)


def region_save(*, region: Region, actor: Actor) -> Region:
    """Checks and saves a region (new or changed) and audits it."""
    region_validate(region)
    created = region.pk is None
    try:
        with transaction.atomic():
            region.save()
            audit_record(
                actor=actor,
                action="region.create" if created else "region.change",
                obj=region,
                details={"code": region.code, "is_primary": region.is_primary},
            )
    except IntegrityError as exc:
        raise InvalidInput(f"Region {region.code} could not be saved: {exc}") from exc
    return region


def region_primary() -> Region | None:
    return Region.objects.filter(is_primary=True).first()


def regions_by_codes(codes: list[str]) -> list[Region]:
    """Active target regions by code, in the order given; InvalidInput names the codes
    that are unknown, inactive or the primary."""
    regions = {r.code: r for r in Region.objects.filter(code__in=codes)}
    problems = {}
    for code in codes:
        region = regions.get(code)
        if region is None:
            problems[code] = "unknown region"
        elif region.is_primary:
            problems[code] = "the primary region already holds every version"
        elif not region.is_active:
            problems[code] = "the region is inactive"
    if problems:
        valid = list(
            Region.objects.filter(is_primary=False, is_active=True).values_list("code", flat=True)
        )
        raise InvalidInput(
            "Cannot replicate to "
            + "; ".join(f"{code} ({why})" for code, why in problems.items())
            + f". Target regions: {', '.join(valid) or 'none configured'}.",
            details={"regions": problems, "valid": valid},
        )
    return [regions[code] for code in codes]


def region_get(code: str) -> Region:
    region = Region.objects.filter(code=code).first()
    if region is None:
        raise NotFound(f"No region {code!r}.")
    return region
