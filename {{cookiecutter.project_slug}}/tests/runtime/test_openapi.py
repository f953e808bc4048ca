"""The server against its own OpenAPI document (GET /openapi.json), fuzzed with schemathesis.

Every generated request, valid or not, must get a documented status code (never a 5xx) and a
response that matches the documented schema and content type. The budget is small on purpose.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from lsbackend.server import OPENAPI, create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings

from conftest import EXAMPLES_CONFIG, MODEL_CLASS

pytestmark = pytest.mark.slow  # hundreds of generated requests (Schemathesis)

_TMP = tempfile.TemporaryDirectory()
# a day of debounce: START_TRAINING requests stay queued and never train during the fuzzing
APP = create_app(Backend(MODEL_CLASS, Settings(model_dir=Path(_TMP.name), label_config_path=EXAMPLES_CONFIG,
                                               train_debounce_seconds=86400.0)))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


def test_the_document_is_openapi_3_and_names_every_route():
    doc = json.loads(OPENAPI)
    assert doc["openapi"].startswith("3.")
    routes = {rule.rule.replace("<project>", "{project}") for rule in APP.url_map.iter_rules()}
    routes -= {"/static/<path:filename>"}
    assert routes == set(doc["paths"]), routes ^ set(doc["paths"])
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "200" in operation["responses"] or "201" in operation["responses"], (method, path)


def test_openapi_json_is_served_without_auth(tmp_path):
    settings = Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG,
                        basic_auth_user="ls", basic_auth_pass="pw")
    response = create_app(Backend(MODEL_CLASS, settings)).test_client().get("/openapi.json")
    assert response.status_code == 200 and response.get_json()["info"]["title"]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case):
    case.call_and_validate(checks=CHECKS)
