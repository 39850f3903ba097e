"""Who may see and change what: every read of datasets filters through here."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from catalog.models import STEWARD_ROLES, Dataset, Membership, Organization, Visibility


def organizations_of(user, *, roles=None) -> QuerySet[Organization]:
    if not getattr(user, "is_authenticated", False):
        return Organization.objects.none()
    if user.is_superuser:
        return Organization.objects.all()
    memberships = user.memberships.all()
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return Organization.objects.filter(pk__in=memberships.values("organization_id"))


def organizations_stewarded_by(user) -> QuerySet[Organization]:
    return organizations_of(user, roles=STEWARD_ROLES)


def datasets_visible_to(user) -> QuerySet[Dataset]:
    """Public datasets for anyone; internal ones for any signed-in user; private ones for
    members of their organisation; everything for a superuser."""
    datasets = Dataset.objects.select_related("organization")
    if not getattr(user, "is_authenticated", False):
        return datasets.filter(visibility=Visibility.PUBLIC)
    if user.is_superuser:
        return datasets
    return datasets.filter(
        Q(visibility__in=[Visibility.PUBLIC, Visibility.INTERNAL])
        | Q(organization__in=organizations_of(user))
    )


def users_who_may_see(dataset: Dataset) -> QuerySet:
    """The active users who may see `dataset`: the same rule as `datasets_visible_to`,
    read from the dataset's side, so a fan-out to many users costs one query."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True)
    if dataset.visibility in (Visibility.PUBLIC, Visibility.INTERNAL):
        return users
    return users.filter(
        Q(is_superuser=True) | Q(memberships__organization_id=dataset.organization_id)
    ).distinct()


# Where a user object keeps the answers of `user_can_steward`, by organisation id.
_STEWARDS_CACHE = "_steward_of"


def user_can_steward(user, organization: Organization) -> bool:
    """Whether `user` stewards (or administers) `organization`: what
    `organizations_stewarded_by` says, asked of the one membership. Asked once per user
    object and organisation, as Django keeps a user's permissions on the user object: a
    user object lives for one request or one task (a request's token user is its own
    copy), and an upload asks twice, before its first byte and in the service.
    `membership_set` forgets the answers of the user object it is given."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    known = getattr(user, _STEWARDS_CACHE, None)
    if known is None:
        known = {}
        setattr(user, _STEWARDS_CACHE, known)
    if organization.pk not in known:
        known[organization.pk] = Membership.objects.filter(
            user_id=user.pk, organization_id=organization.pk, role__in=STEWARD_ROLES
        ).exists()
    return known[organization.pk]


def user_stewards_forget(user) -> None:
    """Drops what `user_can_steward` kept on this user object (its roles changed)."""
    if hasattr(user, _STEWARDS_CACHE):
        delattr(user, _STEWARDS_CACHE)


def dataset_get_by_path(
    *, path: str, organization: Organization | None = None, user=None
) -> Dataset:
    """The dataset at `<layer>/<name>`, seen as `user` sees it (all of them when None).

    Raises NotFound for a malformed path, an unknown dataset, or one the user may not
    see, with the same message, so nobody learns that a hidden dataset exists; and
    InvalidInput when the path names datasets in several of the user's organisations.
    """
    from catalog.exceptions import InvalidInput, NotFound

    layer, sep, name = path.strip().partition("/")
    if not sep or not layer or not name or "/" in name:
        raise NotFound(f"No dataset {path!r}: datasets are addressed as <layer>/<name>.")
    datasets = (
        Dataset.objects.select_related("organization")
        if user is None
        else datasets_visible_to(user)
    )
    datasets = datasets.filter(layer=layer, name=name)
    if organization is not None:
        datasets = datasets.filter(organization=organization)
    found = list(datasets[:2])
    if not found:
        raise NotFound(f"No dataset {path!r}.")
    if len(found) > 1:
        raise InvalidInput(
            f"Several organisations have a dataset {path!r}: name the organisation.",
            details={"organizations": sorted(d.organization.slug for d in found)},
        )
    return found[0]
