"""Property-based fuzzing of `lfmrt serve` from its own OpenAPI document (schemathesis): bodies
that fit the schema and bodies that break it, on every operation; none may get a 5xx, and every
4xx is an OpenAI error object.

CI runs a small number of cases per operation and mode (LFMRT_FUZZ_EXAMPLES, default 25);
a longer run: ``LFMRT_FUZZ_EXAMPLES=500 python -m pytest -q tests/test_server_fuzz.py``.
"""
from __future__ import annotations

import os

import pytest

pytest.importorskip("fastapi", reason="the server extra (pip install 'lfmrt[server]') is not installed")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

import lfmrt  # noqa: E402
from lfmrt.server import ServerConfig  # noqa: E402

from test_server import running_server  # noqa: E402

KEY = "fuzz-key"
EXAMPLES = int(os.environ.get("LFMRT_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def url():
    model = lfmrt.Model.load("demo", n_threads=2)
    # A small max_tokens limit keeps each generated answer short (larger asks are a 400).
    config = ServerConfig(model_name="lfmrt-demo", api_key=KEY, max_tokens_limit=8, max_sequences=4)
    with running_server(model, config) as address:
        yield address


@pytest.fixture(scope="module")
def schema(url):
    return schemathesis.openapi.from_url(url + "/openapi.json")


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_gets_a_server_error(url, schema, mode):
    operations = _operations(schema)
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                              "/metrics"}
    generation_mode = schemathesis.GenerationMode(mode)
    if mode == "negative":  # only a body or parameters can be made invalid
        operations = [op for op in operations if op.method.upper() == "POST" or op.path_parameters]
    failures = []
    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=generation_mode))
        def check(case):
            response = case.call(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {case.as_curl_command()} -> {response.text[:300]}")
            elif response.status_code >= 400:
                error = response.json().get("error")
                assert isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error), response.text

        check()
    assert not failures, "\n".join(failures[:10])
