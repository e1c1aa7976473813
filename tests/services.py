"""The test services: which real servers this run uses, and whether they are mandatory.

C360_TEST_POSTGRES_URL, C360_TEST_REDIS_URL and C360_TEST_MONGO_URL name real servers; with
C360_TEST_REQUIRE_SERVICES=1 a missing or unreachable one fails the run instead of skipping.
"""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get("C360_TEST_POSTGRES_URL") or None
REDIS_URL = os.environ.get("C360_TEST_REDIS_URL") or None
MONGO_URL = os.environ.get("C360_TEST_MONGO_URL") or None
REQUIRED = os.environ.get("C360_TEST_REQUIRE_SERVICES") == "1"


def unavailable(service: str, reason: str) -> None:
    """Skip, or fail when services are required (CI), because `service` cannot be used."""
    message = f"{service}: {reason}"
    if REQUIRED:
        pytest.fail(f"{message} (C360_TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)
