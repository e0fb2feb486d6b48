"""Property-based API test: schemathesis reads /openapi.json and throws generated requests at a
seeded SQLite database with an admin key. No request may cause a 5xx, and every response must
match the documented status codes, content types and schemas."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from syncd.api import create_app
from syncd.store.db import Database
from tests.test_api_helpers import KEYS, bearer, seed
from tests.test_api_helpers import settings as api_settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# schemathesis' lazy `from_fixture` loader does not work with this pytest, so the schema is read
# at import time from an app whose database is created (empty, untouched) in a temporary
# directory; the fixture below migrates and seeds it before the first request.
_DIRECTORY = tempfile.TemporaryDirectory(prefix="syncd-schemathesis-")
_DATABASE = Database(f"sqlite:///{Path(_DIRECTORY.name) / 'api.db'}")
APP = create_app(_DATABASE, api_settings())
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _seeded_database() -> Iterator[None]:
    _DATABASE.upgrade()
    seed(_DATABASE)
    yield
    _DATABASE.dispose()
    _DIRECTORY.cleanup()


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    # Sent with FastAPI's own test client: schemathesis' ASGI transport trips over the
    # urllib3-future package installed alongside requests here.
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=bearer(KEYS["admin"]))
    with TestClient(APP) as client:
        response = client.request(**kwargs)
    case.validate_response(response, checks=CHECKS)
