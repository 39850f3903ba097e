"""What a small upload through the API costs in queries, from the request to its
published version (the request publishes it itself: `publish_now`), counted as a
server runs it, in autocommit (guards against queries creeping back)."""

from __future__ import annotations

import pytest
from django.utils.functional import SimpleLazyObject

from catalog.models import Role
from catalog.selectors import user_can_steward
from catalog.services import membership_set
from tests.api.conftest import CSV, multipart, post_multipart

pytestmark = pytest.mark.django_db(transaction=True)

# The dataset, the steward check (the view's, before a byte is read; the service asks
# the same user object again and is answered without a query); taking the file in:
# another publish unfinished? the current version, the numbers at or above it, whether
# the predicted version's key is held, the job's row (one statement, no transaction of
# its own), then the job queued with its audit entry (4, with BEGIN and COMMIT);
# publishing it here: the dataset's lock and its release (2), the claim and the claimed
# job (2), the current version and the numbers at or above it (2), the commit (16 with
# BEGIN and COMMIT, as in tests/versioning/test_publish_queries.py); the job as the
# answer shows it. It was 38: the job's row had a transaction of its own, and the
# service asked the steward question again.
UPLOAD_REQUEST_QUERIES = 35


def test_a_small_upload_runs_a_fixed_number_of_queries(
    published, steward, as_user, django_assert_num_queries
):
    client = as_user(steward)
    assert client.get("/api/v1/manifest/").status_code == 200  # the token is cached
    data = CSV + b"2024-08-12,ST0003,1.5,true\n"
    with django_assert_num_queries(UPLOAD_REQUEST_QUERIES):
        response = post_multipart(client, multipart([("file", "day.csv", data)]))
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "succeeded"
    assert response.json()["version"] == "1.0.1"


def test_a_steward_demoted_between_two_uploads_is_refused_the_second(
    published, steward, acme, system, as_user
):
    client = as_user(steward)
    data = CSV + b"2024-08-12,ST0003,1.5,true\n"
    first = post_multipart(client, multipart([("file", "day.csv", data)]))
    assert first.status_code == 202, first.content
    membership_set(organization=acme, user=steward, role=Role.VIEWER, actor=system)
    second = post_multipart(client, multipart([("file", "day.csv", data + data[-27:])]))
    assert second.status_code == 403, second.content


def test_a_user_objects_steward_answer_is_forgotten_when_its_role_changes(
    steward, acme, system, django_assert_num_queries
):
    assert user_can_steward(steward, acme)
    with django_assert_num_queries(0):  # asked again of the same object: known
        assert user_can_steward(steward, acme)
    membership_set(organization=acme, user=steward, role=Role.VIEWER, actor=system)
    assert not user_can_steward(steward, acme)


def test_the_answer_is_kept_on_the_user_behind_a_requests_lazy_user(steward, acme, system):
    # Django's request.user is a lazy object around the user: the answer is kept on the
    # user itself, so a role changed through the user is seen through the lazy object.
    lazy = SimpleLazyObject(lambda: steward)
    assert user_can_steward(lazy, acme)
    membership_set(organization=acme, user=steward, role=Role.VIEWER, actor=system)
    assert not user_can_steward(lazy, acme)
