"""http renderer: pure mapping functions, a real local HTTP server for every outcome, MockTransport."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from farm.models import ErrorKind
from farm.render import Registry, RenderError, SimpleContext
from renderers.http import HttpRenderer, HttpSettings, ServiceSettings
from renderers.http_wire import (
    build_body,
    check_payload,
    error_text,
    extract_id,
    kind_for_status,
    service_percent,
    shape_result,
)
from tests.renderers.conftest import ContextFactory
from tests.renderers.http_server import FakeService

PAYLOAD = {
    "job_type": "doubt",
    "input": "Why is the sky blue?",
    "style": "whiteboard",
    "length": 60,
    "voice": "en-1",
}
FAST = {"connect_timeout": 2.0, "read_timeout": 5.0, "poll_interval": 0.05}


def settings(url: str, refused_url: str = "http://127.0.0.1:9") -> HttpSettings:
    def svc(**values: Any) -> dict[str, Any]:
        return {"base_url": url, **FAST, **values}

    def run_async(prefix: str, **values: Any) -> dict[str, Any]:
        paths = {"render_path": f"/{prefix}/render", "status_path": f"/{prefix}/status/{{id}}"}
        return svc(mode="async", **paths, **values)

    return HttpSettings.model_validate(
        {
            "services": {
                "orch": svc(),
                "orch_auth": svc(
                    auth_header="Authorization", auth_env="FARM_TEST_TOKEN", auth_prefix="Bearer "
                ),
                "generic": svc(preset="generic", render_path="/generic"),
                "plain": svc(preset="generic", render_path="/plain-text"),
                "no_video": svc(render_path="/no-video"),
                "async": run_async("async"),
                "async_pct": run_async("async-pct", preset="generic"),
                "async_fail": run_async("async-fail"),
                "async_slow": run_async("async-slow", cancel_path="/async-slow/cancel/{id}"),
                "async_gone": run_async("async-gone"),
                "no_id": run_async("no-id"),
                **{
                    name: svc(render_path=f"/{name}")
                    for name in ("e500", "e502", "e400", "e401", "e422", "e429")
                },
                "e404": svc(render_path="/nowhere"),
                "hang": svc(render_path="/hang", read_timeout=0.3),
                "refused": {"base_url": refused_url, **FAST},
                "sick": svc(health_path="/sick/health"),
            }
        }
    )


@pytest.fixture
def renderer(http_service: FakeService, closed_port: int) -> HttpRenderer:
    return HttpRenderer(settings(http_service.url, f"http://127.0.0.1:{closed_port}"))


def render(
    renderer: HttpRenderer, ctx: SimpleContext, service: str, payload: dict[str, Any] | None = None
) -> Any:
    return renderer.render(renderer.validate({"service": service, "payload": payload or PAYLOAD}), ctx)


# --- pure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (200, None),
        (201, None),
        (301, ErrorKind.API_ERROR),
        (400, ErrorKind.INVALID_INPUT),
        (401, ErrorKind.INVALID_INPUT),
        (403, ErrorKind.INVALID_INPUT),
        (404, ErrorKind.NOT_FOUND),
        (408, ErrorKind.TIMEOUT),
        (422, ErrorKind.INVALID_INPUT),
        (429, ErrorKind.API_ERROR),
        (500, ErrorKind.API_ERROR),
        (503, ErrorKind.API_ERROR),
    ],
)
def test_kind_for_status(code: int, kind: ErrorKind | None) -> None:
    assert kind_for_status(code) == kind


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"error": "boom"}', "boom"),
        (b'{"detail": "bad style"}', "bad style"),
        (b'{"message": "nope", "code": 7}', "nope"),
        (b'{"error": {"message": "nested"}}', "nested"),
        (
            b'{"detail": [{"loc": ["body", "voice"], "msg": "field required"}, {"msg": "too long"}]}',
            "field required; too long",
        ),
        (b"plain   text\n with  spaces", "plain text with spaces"),
        (b"", ""),
    ],
)
def test_error_text(body: bytes, text: str) -> None:
    assert error_text(body) == text


def test_error_text_is_truncated() -> None:
    assert len(error_text(b"x" * 5000)) < 400


def test_build_body_orchestrator_contract() -> None:
    body = build_body("orchestrator", PAYLOAD, "job-9", None)
    assert body == {"job_id": "job-9", **PAYLOAD}
    no_type = {k: v for k, v in PAYLOAD.items() if k != "job_type"}
    assert build_body("orchestrator", no_type, "j", "daily_ca")["job_type"] == "daily_ca"
    with pytest.raises(RenderError, match="job_type"):
        build_body("orchestrator", no_type, "j", None)
    assert build_body("generic", {"anything": [1, 2]}, "j", None) == {"anything": [1, 2]}


@pytest.mark.parametrize(
    "payload",
    [
        {k: v for k, v in PAYLOAD.items() if k != "voice"},
        {**PAYLOAD, "length": True},
        {**PAYLOAD, "input": ""},
        {**PAYLOAD, "style": 3},
        {**PAYLOAD, "job_id": "spoofed"},
        {**PAYLOAD, "extra": 1},
    ],
)
def test_orchestrator_payload_is_checked(payload: dict[str, Any]) -> None:
    with pytest.raises(RenderError) as caught:
        check_payload("orchestrator", payload, 10_000)
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_payload_must_be_json_and_small() -> None:
    check_payload("generic", {"a": [1, "x", None, {"b": 1.5}]}, 1000)
    for bad in ({"a": {1, 2}}, {"a": float("nan")}, {"a": object()}):
        with pytest.raises(RenderError, match="JSON"):
            check_payload("generic", bad, 1000)
    with pytest.raises(RenderError, match="limit"):
        check_payload("generic", {"a": "x" * 2000}, 1000)


def test_extract_id() -> None:
    assert extract_id({"id": "a"}) == "a"
    assert extract_id({"job_id": 17}) == "17"
    assert extract_id({"task_id": "t", "other": 1}) == "t"
    for bad in ({}, {"id": ""}, {"id": True}, {"id": None}, ["a"], "a"):
        with pytest.raises(RenderError) as caught:
            extract_id(bad)
        assert caught.value.kind is ErrorKind.API_ERROR


def test_service_percent() -> None:
    assert service_percent({"progress": 0.25}) == 25.0
    assert service_percent({"progress": 1.0}) == 100.0
    assert service_percent({"progress": 40}) == 40.0
    assert service_percent({"progress": 0.5}, percent_scale=True) == 0.5
    assert service_percent({"percent": 0.5}) == 0.5
    assert service_percent({"progress": 250}) == 100.0
    assert service_percent({"progress": "50%"}) is None
    assert service_percent({"progress": True}) is None
    assert service_percent({}) is None


def test_shape_result() -> None:
    done = shape_result("orchestrator", {"video_url": "v", "thumbnail_url": "t", "duration": 3, "x": 1}, "s")
    assert done == {
        "outputs": [],
        "urls": ["v", "t"],
        "service": "s",
        "video_url": "v",
        "thumbnail_url": "t",
        "duration": 3,
        "processing_time_ms": None,
    }
    assert shape_result("orchestrator", {"status": "done", "result": {"video_url": "v"}}, "s")["urls"] == [
        "v"
    ]
    with pytest.raises(RenderError) as caught:
        shape_result("orchestrator", {"thumbnail_url": "t"}, "s")
    assert caught.value.kind is ErrorKind.API_ERROR
    assert shape_result("generic", [1, 2], "s") == {"outputs": [], "service": "s", "response": [1, 2]}


@pytest.mark.parametrize(
    "bad",
    [
        {"base_url": "ftp://x"},
        {"base_url": "not a url"},
        {"base_url": "http://x", "render_path": "render"},
        {"base_url": "http://x", "mode": "async", "status_path": "/status"},
        {"base_url": "http://x", "auth_header": "Authorization"},
        {"base_url": "http://x", "mode": "batch"},
        {"base_url": "http://x", "poll_interval": 0},
        {"base_url": "http://x", "api_key": "inline secrets are not a setting"},
    ],
)
def test_service_settings_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ServiceSettings.model_validate(bad)


def test_validate_names_a_configured_service() -> None:
    renderer = HttpRenderer(settings("http://127.0.0.1:1"))
    assert renderer.validate({"service": "orch", "payload": PAYLOAD}).service == "orch"
    with pytest.raises(RenderError, match="unknown http service 'nope'") as caught:
        renderer.validate({"service": "nope", "payload": PAYLOAD})
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    with pytest.raises(ValidationError):
        renderer.validate({"service": "../orch", "payload": PAYLOAD})
    with pytest.raises(ValidationError):
        renderer.validate({"service": "orch", "payload": PAYLOAD, "url": "http://evil"})


def test_registry_builds_it_from_config() -> None:
    registry = Registry(settings={"http": {"services": {"orchestrator": {"base_url": "http://render:8000"}}}})
    renderer = registry.get("http")
    assert isinstance(renderer, HttpRenderer)
    assert renderer.settings.services["orchestrator"].render_path == "/render"


def test_client_is_lazy_shared_and_renewed_after_fork() -> None:
    renderer = HttpRenderer(settings("http://127.0.0.1:1"))
    assert renderer._own is None  # nothing created at construction (before a fork)
    first = renderer.client
    assert renderer.client is first
    renderer._own_pid = os.getpid() + 1  # as if we were now in a forked child
    assert renderer.client is not first
    injected = httpx.Client()
    renderer.client = injected
    assert renderer.client is injected
    injected.close()


# --- against a real HTTP server ----------------------------------------------------------------


def test_sync_orchestrator(
    renderer: HttpRenderer, http_service: FakeService, make_ctx: ContextFactory
) -> None:
    ctx = make_ctx(job_id="job-42")
    result = render(renderer, ctx, "orch")
    assert result == {
        "outputs": [],
        "urls": ["https://cdn.example/job-42.mp4", "https://cdn.example/job-42.jpg"],
        "service": "orch",
        "video_url": "https://cdn.example/job-42.mp4",
        "thumbnail_url": "https://cdn.example/job-42.jpg",
        "duration": 42.5,
        "processing_time_ms": 1234,
    }
    sent = [r for r in http_service.requests if r.body and r.body.get("job_id") == "job-42"][-1]
    assert (sent.method, sent.path) == ("POST", "/render")
    assert sent.body == {"job_id": "job-42", **PAYLOAD}
    assert sent.headers["Content-Type"] == "application/json"
    assert "Authorization" not in sent.headers
    assert ctx.progress_calls[0][0] == 0.0 and ctx.progress_calls[-1] == (100.0, "done")
    json.dumps(result)  # JSON-able


def test_auth_header_comes_from_the_environment(
    renderer: HttpRenderer,
    http_service: FakeService,
    make_ctx: ContextFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FARM_TEST_TOKEN", "s3cret")
    ctx = make_ctx(job_id="job-auth")
    render(renderer, ctx, "orch_auth")
    sent = [r for r in http_service.requests if r.body and r.body.get("job_id") == "job-auth"][-1]
    assert sent.headers["Authorization"] == "Bearer s3cret"
    assert not any("s3cret" in line for line in ctx.lines)
    monkeypatch.delenv("FARM_TEST_TOKEN")
    with pytest.raises(RenderError, match="FARM_TEST_TOKEN is not set"):
        render(renderer, make_ctx(), "orch_auth")


def test_job_type_falls_back_to_the_jobs_own(
    renderer: HttpRenderer, http_service: FakeService, make_ctx: ContextFactory
) -> None:
    ctx = make_ctx(job_id="job-typed")
    ctx.job_type = "topic_short"  # type: ignore[attr-defined]
    payload = {k: v for k, v in PAYLOAD.items() if k != "job_type"}
    render(renderer, ctx, "orch", payload)
    sent = [r for r in http_service.requests if r.body and r.body.get("job_id") == "job-typed"][-1]
    assert sent.body["job_type"] == "topic_short"


def test_async_create_then_poll_with_progress(
    renderer: HttpRenderer, http_service: FakeService, make_ctx: ContextFactory
) -> None:
    ctx = make_ctx(job_id="job-async")
    result = render(renderer, ctx, "async")
    assert result["remote_id"] == "t-job-async"
    assert result["video_url"] == "https://cdn.example/t-job-async.mp4"
    assert http_service.polls["t-job-async"] == 4
    percents = [p for p, _ in ctx.progress_calls if p is not None]
    assert percents == sorted(percents)
    assert 25.0 in percents and 75.0 in percents and percents[-1] == 100.0
    stages = {s for _, s in ctx.progress_calls}
    assert {"async: queued", "async: running"} <= stages


def test_async_generic_with_percent_progress(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    result = render(renderer, ctx, "async_pct", {"scene": "x"})
    assert result["response"] == {"state": "done", "answer": 42}
    assert result["remote_id"] == "r/1 2"
    assert [p for p, s in ctx.progress_calls if s == "async_pct: rendering"] == [5.0, 40.0, 80.0]


def test_async_remote_failure_is_api_error(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), "async_fail")
    assert caught.value.kind is ErrorKind.API_ERROR
    assert "out of GPUs" in caught.value.message


def test_async_status_404_is_not_found(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), "async_gone")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert "job expired" in caught.value.message
    assert "/async-gone/status/r%2F1%202" in caught.value.message  # the remote id is quoted into the path


def test_async_without_id_is_api_error(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), "no_id")
    assert caught.value.kind is ErrorKind.API_ERROR


def test_async_cancel_stops_polling_and_cancels_remotely(
    renderer: HttpRenderer, http_service: FakeService, make_ctx: ContextFactory
) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(cancel_after=0.4), "async_slow")
    assert caught.value.kind is ErrorKind.CANCELED
    assert time.monotonic() - started < 1.5
    assert "POST /async-slow/cancel/r%2F1%202" in http_service.paths()


def test_async_deadline_is_timeout(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(deadline=time.monotonic() + 0.4), "async_slow")
    assert caught.value.kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize(
    ("service", "kind", "text"),
    [
        ("e500", ErrorKind.API_ERROR, "HTTP 500 from POST http://127.0.0.1:"),
        ("e500", ErrorKind.API_ERROR, "database exploded"),
        ("e502", ErrorKind.API_ERROR, "bad gateway"),
        ("e400", ErrorKind.INVALID_INPUT, "style 'neon' is unknown"),
        ("e401", ErrorKind.INVALID_INPUT, "bad token"),
        ("e422", ErrorKind.INVALID_INPUT, "field required"),
        ("e429", ErrorKind.API_ERROR, "slow down"),
        ("e404", ErrorKind.NOT_FOUND, "no such route here"),
        ("no_video", ErrorKind.API_ERROR, "no video_url"),
    ],
)
def test_status_codes_map_to_error_kinds(
    renderer: HttpRenderer, make_ctx: ContextFactory, service: str, kind: ErrorKind, text: str
) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), service)
    assert caught.value.kind is kind
    assert text in caught.value.message
    assert caught.value.message.startswith(f"{service}: ")
    assert "\n" not in caught.value.message


def test_hanging_service_is_a_timeout(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), "hang")
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2.0


def test_ctx_deadline_bounds_a_slow_request(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    renderer.settings.services["hang"].read_timeout = 30.0
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(deadline=time.monotonic() + 0.5), "hang")
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2.0


def test_connection_refused_is_api_error(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        render(renderer, make_ctx(), "refused")
    assert caught.value.kind is ErrorKind.API_ERROR
    assert "ConnectError" in caught.value.message


def test_generic_preset_returns_the_response(renderer: HttpRenderer, make_ctx: ContextFactory) -> None:
    payload = {"scene": "intro", "args": ["$(rm -rf /)", 1, None]}
    assert render(renderer, make_ctx(), "generic", payload)["response"] == {"echo": payload}
    assert render(renderer, make_ctx(), "plain", payload)["response"] == "rendered fine"


def test_doctor_reports_each_service(http_service: FakeService, closed_port: int) -> None:
    healthy = HttpRenderer(HttpSettings.model_validate({"services": {"a": {"base_url": http_service.url}}}))
    assert healthy.doctor().ok and healthy.doctor().detail == "a: ok"
    mixed = HttpRenderer(settings(http_service.url, f"http://127.0.0.1:{closed_port}"))
    health = mixed.doctor()
    assert not health.ok
    assert "orch: ok" in health.detail
    assert "refused: unreachable (ConnectError)" in health.detail
    assert "sick: HTTP 503" in health.detail
    assert HttpRenderer().doctor().ok  # nothing configured, nothing broken


# --- with httpx.MockTransport --------------------------------------------------------------------


def test_mock_transport_sync_and_transport_errors(tmp_path: Path, make_ctx: ContextFactory) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/render":
            return httpx.Response(200, json={"video_url": "https://v/1.mp4", "duration": 1.0})
        if request.url.path == "/reset":
            raise httpx.ReadError("connection reset by peer", request=request)
        raise httpx.ReadTimeout("too slow", request=request)

    mock = HttpSettings.model_validate(
        {
            "services": {
                "ok": {"base_url": "http://render.test"},
                "reset": {"base_url": "http://render.test", "render_path": "/reset"},
                "slow": {"base_url": "http://render.test", "render_path": "/slow"},
            }
        }
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        renderer = HttpRenderer(mock, client=client)
        result = render(renderer, make_ctx(job_id="mock-1"), "ok")
        assert result["video_url"] == "https://v/1.mp4" and result["thumbnail_url"] is None
        assert json.loads(seen[0].content) == {"job_id": "mock-1", **PAYLOAD}
        for service, kind in (("reset", ErrorKind.API_ERROR), ("slow", ErrorKind.TIMEOUT)):
            with pytest.raises(RenderError) as caught:
                render(renderer, make_ctx(), service)
            assert caught.value.kind is kind
