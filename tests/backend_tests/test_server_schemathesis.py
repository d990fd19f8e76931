"""Property-based fuzzing of the served OpenAPI schema with schemathesis: every operation gets
schema-valid (positive) and schema-violating (negative) requests; the server must answer each
one without a 5xx, with a JSON ``{"error": ...}`` body for every 4xx, and keep serving.
Schemathesis' own checks also run: only documented status codes and content types, responses
that match their schemas, and negative data rejected. (Its "positive data accepted" check does
not apply: a schema-valid upload of random bytes is rightly refused as not a video.)
At least 300 generated cases in all (~20 s on 2 cores)."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from backend_tests.test_server_helpers import Server

EXAMPLES_PER_OPERATION_AND_MODE = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("fuzz"), "--max-queue", "3", "--max-upload-mb", "2", "--keep-jobs", "5")
    yield s
    s.stop()


def test_schemathesis_no_server_errors(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/uploads", "POST /v1/jobs", "GET /v1/jobs/{job_id}", "DELETE /v1/jobs/{job_id}",
        "GET /v1/jobs/{job_id}/bundle", "GET /v1/health"}
    seen = {"cases": 0, "by_status": {}}
    failures = []

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, deadline=None, database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                headers = dict(case.headers or {})
                headers["Authorization"] = server.auth["Authorization"]  # fuzz the API, not the token
                case.headers = headers
                try:
                    response = case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=120)
                except Exception as e:  # schemathesis' FailureGroup: record it, keep fuzzing
                    response = getattr(e, "response", None) or case.call(base_url=server.url, timeout=120)
                    failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {str(e)[:600]}")
                seen["cases"] += 1
                status = response.status_code
                seen["by_status"][status] = seen["by_status"].get(status, 0) + 1
                if status >= 500:
                    failures.append(f"{op.method.upper()} {op.path} -> {status}: {response.text[:300]}")
                elif status >= 400:
                    body = response.json()
                    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
                        failures.append(f"{op.method.upper()} {op.path} -> {status} without an error message")

            run()

    print(f"schemathesis: {seen['cases']} cases, statuses {dict(sorted(seen['by_status'].items()))}")
    assert not failures, failures[:10]
    assert seen["cases"] >= 300
    assert requests.get(server.url + "/v1/health", headers=server.auth, timeout=120).status_code == 200
