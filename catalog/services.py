"""Changes to the registry: organisations, memberships, datasets.

Every function validates its input, checks that the actor may act, writes in one short
transaction, records the audit entry, and raises only `catalog.exceptions` errors.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog.api.generations import generation_bump
from catalog.audit import Actor, audit_record
from catalog.exceptions import Forbidden, InvalidInput
from catalog.models import Dataset, Membership, Organization, Role
from catalog.selectors import user_can_steward, user_stewards_forget


def _full_clean(obj, *, exclude=None) -> None:
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as err:
        messages = "; ".join(
            f"{field}: {' '.join(errors)}" if field != "__all__" else " ".join(errors)
            for field, errors in err.message_dict.items()
        )
        raise InvalidInput(messages, details=err.message_dict) from None


def organization_create(*, slug: str, name: str = "", actor: Actor) -> Organization:
    org = Organization(slug=slug, name=name or slug)
    _full_clean(org)
    with transaction.atomic():
        org.save()
        audit_record(actor=actor, action="organization.create", obj=org, organization=org)
        generation_bump()
    return org


def membership_set(*, organization: Organization, user, role: str, actor: Actor) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}: use one of {', '.join(Role.values)}.")
    with transaction.atomic():
        membership, created = Membership.objects.update_or_create(
            user=user, organization=organization, defaults={"role": role}
        )
        audit_record(
            actor=actor,
            action="membership.create" if created else "membership.update",
            obj=membership,
            organization=organization,
            details={"role": role},
        )
        generation_bump()  # who may see which private datasets changed
    user_stewards_forget(user)
    return membership


def ensure_steward(*, actor: Actor, organization: Organization) -> None:
    """Raises Forbidden unless the actor is a steward or admin of the organisation.

    Only the explicit system actor (`Actor.system`, commands and workers) may act
    anywhere; an actor without a signed-in user (an anonymous request) is refused.
    """
    if actor.is_system:
        return
    if actor.user is None or not getattr(actor.user, "is_authenticated", False):
        raise Forbidden("Sign in as a steward of the organisation to do this.")
    if not user_can_steward(actor.user, organization):
        raise Forbidden(f"You are not a steward of the organisation {organization.slug!r}.")


_DATASET_FIELDS = (
    "title",
    "description",
    "tags",
    "visibility",
    "update_frequency",
    "freshness_hours",
    "owner",
    "compatibility",
)


def dataset_create(
    *, organization: Organization, layer: str, name: str, actor: Actor, **fields
) -> Dataset:
    ensure_steward(actor=actor, organization=organization)
    unknown = set(fields) - set(_DATASET_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown dataset fields: {', '.join(sorted(unknown))}.")
    dataset = Dataset(organization=organization, layer=layer, name=name, **fields)
    if dataset.owner is None and getattr(actor.user, "pk", None):
        dataset.owner = actor.user
    _full_clean(dataset)
    try:
        with transaction.atomic():
            dataset.save()
            audit_record(
                actor=actor, action="dataset.create", obj=dataset, organization=organization
            )
            generation_bump()
    except IntegrityError:
        raise InvalidInput(
            f"The organisation {organization.slug!r} already has a dataset {dataset.path!r}."
        ) from None
    return dataset


def dataset_update(*, dataset: Dataset, actor: Actor, **fields) -> Dataset:
    ensure_steward(actor=actor, organization=dataset.organization)
    unknown = set(fields) - set(_DATASET_FIELDS)
    if unknown:
        raise InvalidInput(f"These dataset fields cannot be changed: {', '.join(sorted(unknown))}.")
    changed = {k: v for k, v in fields.items() if getattr(dataset, k) != v}
    for key, value in changed.items():
        setattr(dataset, key, value)
    _full_clean(dataset)
    with transaction.atomic():
        dataset.save()
        audit_record(
            actor=actor,
            action="dataset.update",
            obj=dataset,
            organization=dataset.organization,
            details={"changed": sorted(changed)},
        )
        generation_bump()
    return dataset
