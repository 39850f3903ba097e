"""Finding the dataset a request names, as its caller may see it.

Every endpoint under `/datasets/<layer>/<name>/` goes through `dataset_for_request`, so
the rule holds everywhere: a dataset the caller may not see answers exactly like one
that does not exist (404, same message), and an anonymous caller asking for anything
but a public dataset is asked to authenticate (401) whether or not it exists.
"""

from __future__ import annotations

from rest_framework import exceptions

from catalog.api.permissions import device_dataset_id
from catalog.exceptions import InvalidInput, NotFound
from catalog.models import Dataset
from catalog.selectors import datasets_visible_to
from catalog.usage_hooks import usage_note


def visible_datasets(request):
    datasets = datasets_visible_to(request.user)
    device = device_dataset_id(request)
    if device is not None:
        datasets = datasets.filter(pk=device)
    return datasets


def dataset_for_request(request, *, layer: str, name: str, org: str | None = None) -> Dataset:
    datasets = visible_datasets(request).filter(layer=layer, name=name)
    if org is not None:
        datasets = datasets.filter(organization__slug=org)
    found = list(datasets[:2])
    if not found:
        if not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        where = f" in organisation {org!r}" if org else ""
        raise NotFound(f"No dataset '{layer}/{name}'{where}.")
    if len(found) > 1:
        raise InvalidInput(
            f"Several organisations have a dataset '{layer}/{name}': use "
            f"/api/v1/orgs/<org>/datasets/{layer}/{name}/.",
            details={"organizations": sorted(d.organization.slug for d in found)},
        )
    usage_note(request, dataset=found[0])
    return found[0]
