"""http renderer bounds: answers past limits.max_result_bytes are streamed and cut off (api_error),
payloads and answers nested too deep or holding lone surrogates are refused, and huge or deep error
bodies still report their status. Against the real local server in ``http_server.py``."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError, SimpleContext
from renderers.http import HttpRenderer, HttpSettings
from renderers.http_wire import check_payload
from tests.renderers.conftest import ContextFactory
from tests.renderers.http_server import FakeService
from tests.util import wait_for

PAYLOAD = {
    "job_type": "doubt",
    "input": "Why is the sky blue?",
    "style": "whiteboard",
    "length": 60,
    "voice": "en-1",
}


@pytest.fixture
def renderer(http_service: FakeService) -> HttpRenderer:
    def svc(path: str, preset: str = "orchestrator") -> dict[str, Any]:
        return {"base_url": http_service.url, "render_path": path, "preset": preset, "read_timeout": 5.0}

    services = {
        "big": svc("/big"),
        "big_error": svc("/big-error"),
        "endless": svc("/endless", "generic"),
        "deep": svc("/deep", "generic"),
        "deepish": svc("/deepish", "generic"),
        "deep_error": svc("/deep-error"),
    }
    return HttpRenderer(HttpSettings.model_validate({"services": services}))


def render(
    renderer: HttpRenderer, ctx: SimpleContext, service: str, payload: dict[str, Any] | None = None
) -> Any:
    return renderer.render(renderer.validate({"service": service, "payload": payload or PAYLOAD}), ctx)


def small_results(env: RendererEnv, staging: Path) -> SimpleContext:
    return SimpleContext(job_id="big", staging_dir=staging, env=replace(env, max_result_bytes=10_000))


def test_an_answer_over_the_result_limit_is_api_error(
    renderer: HttpRenderer, env: RendererEnv, staging: Path, make_ctx: ContextFactory
) -> None:
    assert render(renderer, make_ctx(), "big")["video_url"]  # under the default 1 MiB it is fine
    with pytest.raises(RenderError) as caught:
        render(renderer, small_results(env, staging), "big")
    assert caught.value.kind is ErrorKind.API_ERROR
    assert "over limits.max_result_bytes (10000 bytes)" in caught.value.message


def test_an_endless_answer_is_cut_off_not_read(
    renderer: HttpRenderer, http_service: FakeService, env: RendererEnv, staging: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(renderer, small_results(env, staging), "endless")
    assert caught.value.kind is ErrorKind.API_ERROR
    assert "over limits.max_result_bytes" in caught.value.message
    assert time.monotonic() - started < 3  # it hung up instead of reading on
    wait_for(lambda: http_service.endless_bytes > 0, timeout=5, what="the server sent something")

    def stopped() -> bool:  # a write already under way when the client hung up may still land
        sent = http_service.endless_bytes
        time.sleep(0.3)
        return http_service.endless_bytes == sent

    wait_for(stopped, timeout=5, what="the server to stop sending")
    assert http_service.endless_bytes < 16 * 2**20  # what socket buffers hold, not 20 s of reading


def test_a_huge_error_body_still_reports_the_status(
    renderer: HttpRenderer, env: RendererEnv, staging: Path
) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, small_results(env, staging), "big_error")
    assert caught.value.kind is ErrorKind.API_ERROR
    assert "HTTP 500" in caught.value.message and "out of memory" in caught.value.message
    assert len(caught.value.message) < 600


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"a": deep(100)}, "nested more than 64 levels"),
        ({"a": deep(100_000)}, "nested more than 64 levels"),  # json.dumps: RecursionError
        ({"a": {"b": "\ud800"}}, "not valid UTF-8"),  # httpx could not encode the body
        ({"\udcff": 1}, "not valid UTF-8"),
        ({"a": 10**5000}, "not plain JSON"),  # json.dumps: ValueError past 4300 digits
        ({"a": float("nan")}, "not plain JSON"),
    ],
)
def test_hostile_payloads_are_invalid_input(payload: dict[str, Any], why: str) -> None:
    with pytest.raises(RenderError, match=why) as caught:
        check_payload("generic", payload, 10**9)
    assert caught.value.kind is ErrorKind.INVALID_INPUT and "\n" not in caught.value.message


def test_orchestrator_payload_errors_stay_on_one_line() -> None:
    with pytest.raises(RenderError) as caught:
        check_payload("orchestrator", {**PAYLOAD, "bad\nkey": 1}, 10**6)
    assert "\n" not in caught.value.message and "bad\\nkey" in caught.value.message


@pytest.mark.parametrize(("service", "why"), [("deep", "nested too deeply"), ("deepish", "more than 64")])
def test_answers_nested_too_deep_are_api_error(
    renderer: HttpRenderer, make_ctx: ContextFactory, service: str, why: str
) -> None:
    with pytest.raises(RenderError, match=why) as caught:
        render(renderer, make_ctx(), service, {"x": 1})
    assert caught.value.kind is ErrorKind.API_ERROR


def test_a_deep_error_body_still_reports_the_status(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError, match="HTTP 500") as caught:
        render(renderer, make_ctx(), "deep_error")
    assert caught.value.kind is ErrorKind.API_ERROR
