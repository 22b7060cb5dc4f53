"""The receiver's OpenAPI document: generated from the validating types, current in docs/, and true (schemathesis)."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from fieldrelay.settings import Settings
from receiver.app import create_app
from receiver.openapi import openapi_document, render
from receiver.webhooks import _MESSAGE
from workers.actions.registry import action_params

ROOT = Path(__file__).parents[2]
TOKEN = "openapi-token-0123456789"


def test_docs_copy_is_current():
    assert (ROOT / "docs" / "openapi.json").read_text() == render(), (
        "docs/openapi.json is stale: run `python -m receiver.openapi > docs/openapi.json`"
    )


def test_the_webhook_body_schema_is_the_one_the_receiver_validates_with():
    """Generated, not written: a field added to WebhookMessage (or a range check) shows up here."""
    document = openapi_document()
    body = document["paths"]["/webhooks/servicetrade/{token}"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/WebhookMessage"}
    own = _MESSAGE.json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in own.pop("$defs").items():
        assert document["components"]["schemas"][name] == schema
    assert document["components"]["schemas"]["WebhookMessage"] == own


def test_the_receiver_serves_it(redis_url, tmp_path):
    app = create_app(Settings(redis_url=redis_url, data_dir=tmp_path), action_params())
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(render())


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.mark.slow
def test_every_answer_matches_the_document_and_none_is_a_5xx(redis_url, tmp_path):
    """Schemathesis sends valid and invalid requests to every operation of a receiver over a real Redis.

    Bounded: 150 generated requests, derandomized. The webhook's token is a valid one, so valid
    bodies reach Redis (invalid tokens are `test_app.py`'s). Schemathesis's own pytest integration
    (`from_fixture`) does not run under this pytest, so the cases are drawn with Hypothesis here.
    """
    app = create_app(Settings(redis_url=redis_url, webhook_tokens=TOKEN, data_dir=tmp_path), action_params())
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in loaded.get_all_operations()]  # type: ignore[union-attr]
    assert sorted(op.label for op in operations) == [
        "GET /healthz",
        "GET /metrics",
        "GET /readyz",
        "POST /webhooks/servicetrade/{token}",
    ]
    strategies = [
        op.as_strategy(mode, path_parameters={"token": TOKEN} if "{token}" in op.path else None)
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    seen: set[tuple[str, int]] = set()

    @hypothesis.given(case=st.one_of(strategies))
    @hypothesis.settings(
        max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(hypothesis.HealthCheck)
    )
    def run(case: Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        seen.add((case.operation.label, response.status_code))

    run()
    # The run reached both sides of the webhook: enqueued (200) and refused (400).
    assert {("POST /webhooks/servicetrade/{token}", 200), ("POST /webhooks/servicetrade/{token}", 400)} <= seen
