"""schemathesis against the served OpenAPI document: every generated request to every
operation is answered without a 5xx, with a documented status, content type and body."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_helpers import DIM, MODEL_ID  # noqa: E402

from faceid_sdk import Enroller  # noqa: E402
from faceid_sdk.server import ServerSettings, create_app  # noqa: E402

_STORE = Path(tempfile.mkdtemp(prefix="faceid-schemathesis-")) / "faces.db"
_ENROLLER = Enroller(_STORE, MODEL_ID, DIM)
APP = create_app(_ENROLLER, settings=ServerSettings(rate_per_second=None))
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_conformance(case):
    """Generated requests (valid and invalid per the schema) get documented answers."""
    case.call_and_validate(checks=CHECKS)
