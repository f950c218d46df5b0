"""Schemathesis over the real server's /openapi.json: generated requests (valid and invalid) never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serverproc_helpers import launch_server, small_model, stop_process

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from recops_model import save_model

    root = tmp_path_factory.mktemp("schemathesis")
    save_model(small_model(), root / "model")
    srv = launch_server({"RECOPS_MODEL_URI": str(root / "model"), "RECOPS_RELOAD_INTERVAL_SECONDS": "0"}, root)
    try:
        yield schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    finally:
        stop_process(srv.proc)


def test_no_server_errors(api_schema) -> None:  # type: ignore[no-untyped-def]
    # Hypothesis directly over each operation's strategy (schemathesis' pytest fixture loader does
    # not run under pytest 9); positive and negative (schema-violating) cases both.
    from schemathesis import GenerationMode

    seen: dict[int, int] = {}
    for result in api_schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(timeout=30)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                case.validate_response(response, checks=[not_a_server_error])
                assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

            try:
                run()
            except Unsatisfiable:  # no way to violate the schema of an operation without inputs
                assert mode == GenerationMode.NEGATIVE and not op.path.startswith("/v1/recommendations"), op.path
    print("status codes seen:", seen)
    assert seen and max(seen) < 500, seen
    assert {200, 422} <= set(seen), seen


def test_schema_lists_our_operations(api_schema) -> None:  # type: ignore[no-untyped-def]
    paths = {op.path for op in (r.ok() for r in api_schema.get_all_operations())}
    assert {"/v1/recommendations/{user_id}", "/v1/recommendations", "/invocations", "/ping"} <= paths
