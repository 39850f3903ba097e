"""The page tests reuse the versioning tests' publish with every option."""

from tests.versioning.conftest import publish_with  # noqa: F401
