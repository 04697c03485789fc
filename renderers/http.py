"""The http renderer: a render service over HTTP (sync POST, or POST then poll), one shared httpx client.

Services are defined only in config (``[renderers.http.services.<name>]``); job data names one
and carries a JSON payload. Secrets come from the worker's environment (``auth_env``), never from
job data. Status codes and transport failures map to error kinds as in SPEC §6; the pure pieces
live in ``renderers.http_wire``. Response bodies are read as a stream and never held past
``limits.max_result_bytes`` (a larger answer is ``api_error``). For the render cache a job reads
no input files (its payload is in the params) and ``tool_version`` names every service by address,
mode, preset and paths, never its secret.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from farm.models import ErrorKind
from farm.render import Health, Params, RenderContext, Renderer, RendererEnv, RenderError, Settings

from .http_wire import (
    build_body,
    check_payload,
    decode_answer,
    error_for_response,
    error_text,
    extract_id,
    kind_for_status,
    service_percent,
    shape_result,
)
from .versions import digest

DONE = frozenset({"done", "succeeded", "success", "completed", "complete", "finished"})
FAILED = frozenset({"failed", "failure", "error", "errored", "canceled", "cancelled"})
USER_AGENT = "farm-http-renderer/1"
ERROR_BODY_BYTES = 64 * 1024  # read of an error response, for its explanation


class ServiceSettings(BaseModel):
    """One render service (``[renderers.http.services.<name>]``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    mode: Literal["sync", "async"] = "sync"
    preset: Literal["orchestrator", "generic"] = "orchestrator"
    render_path: str = "/render"
    status_path: str = "/status/{id}"  # async: polled with GET, {id} from the POST's answer
    cancel_path: str | None = None  # async: POSTed (best effort) when the job is canceled
    health_path: str = "/health"
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=300.0, gt=0)
    poll_interval: float = Field(default=2.0, gt=0)
    auth_header: str | None = None  # e.g. "Authorization" or "X-API-Key"
    auth_env: str | None = None  # environment variable holding the secret
    auth_prefix: str = ""  # e.g. "Bearer "

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL with a host, not {value!r}")
        return value.rstrip("/")

    @field_validator("render_path", "status_path", "cancel_path", "health_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"paths must start with '/', not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if (self.auth_header is None) != (self.auth_env is None):
            raise ValueError("auth_header and auth_env go together")
        if self.mode == "async" and "{id}" not in self.status_path:
            raise ValueError("status_path must contain {id} for async services")
        return self


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


class HttpSettings(Settings):
    services: dict[str, ServiceSettings] = {}
    max_payload_bytes: int = Field(default=256 * 1024, gt=0)


class HttpParams(Params):
    service: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="service name from config")
    payload: dict[str, Any] = Field(default_factory=dict, description="JSON body (see the service preset)")


class BodyTooLarge(Exception):
    """A response body went past the bytes ``read_body`` was allowed to keep."""


def read_body(response: httpx.Response, limit: int, *, cut: bool = False) -> bytes:
    """Read a streamed response's body, never holding more than ``limit`` bytes of it.

    Past the limit: ``BodyTooLarge``, or with ``cut`` the first ``limit`` bytes (the rest is
    left unread; closing the stream drops the connection)."""
    declared = response.headers.get("Content-Length", "")
    if not cut and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            if not cut:
                raise BodyTooLarge
            chunks.append(chunk[: len(chunk) - (size - limit)])
            break
        chunks.append(chunk)
    return b"".join(chunks)


class HttpRenderer(Renderer[HttpSettings]):
    name = "http"
    subprocesses = False  # pure Python: stopping the horse stops it
    Params = HttpParams
    Settings = HttpSettings

    def __init__(
        self,
        settings: HttpSettings | None = None,
        env: RendererEnv | None = None,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(settings, env)
        self._injected = client
        self._own: httpx.Client | None = None
        self._own_pid: int | None = None

    @property
    def client(self) -> httpx.Client:
        """The shared client, created lazily and again after a fork (pools must not cross one)."""
        if self._injected is not None:
            return self._injected
        if self._own is None or self._own_pid != os.getpid():
            self._own = httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})
            self._own_pid = os.getpid()
        return self._own

    @client.setter
    def client(self, value: httpx.Client | None) -> None:
        self._injected = value

    def service(self, name: str) -> ServiceSettings:
        found = self.settings.services.get(name)
        if found is None:
            known = ", ".join(sorted(self.settings.services)) or "none"
            raise _invalid(f"unknown http service {name!r} (configured: {known})")
        return found

    def validate(self, params: Mapping[str, Any]) -> HttpParams:
        parsed = HttpParams.model_validate(dict(params))
        check_payload(self.service(parsed.service).preset, parsed.payload, self.settings.max_payload_bytes)
        return parsed

    def tool_version(self) -> str:
        # what decides the answer: where it is asked and in which shape; never auth_* (secrets),
        # nor timeouts and intervals (they decide only whether an answer comes)
        shown = {"base_url", "mode", "preset", "render_path", "status_path"}
        services = {name: one.model_dump(include=shown) for name, one in self.settings.services.items()}
        return f"http/1 {digest(services)}"

    def render(self, params: HttpParams, ctx: RenderContext) -> dict[str, Any]:
        service = self.service(params.service)
        check_payload(service.preset, params.payload, self.settings.max_payload_bytes)
        body = build_body(service.preset, params.payload, ctx.job_id, ctx.job_type)
        ctx.progress(0.0, f"{params.service}: sending")
        data = self._call(ctx, params.service, service, "POST", service.render_path, body)
        if service.mode == "sync":
            result = shape_result(service.preset, data, params.service)
        else:
            result = self._poll(ctx, params.service, service, extract_id(data))
        ctx.progress(100.0, "done")
        return result

    def _poll(
        self, ctx: RenderContext, name: str, service: ServiceSettings, remote_id: str
    ) -> dict[str, Any]:
        path = service.status_path.replace("{id}", quote(remote_id, safe=""))
        best, percent_scale, status = 0.0, False, "queued"
        ctx.log(f"{name}: accepted as {remote_id}")
        while True:
            self._sleep(ctx, name, service, remote_id, service.poll_interval)
            data = self._call(ctx, name, service, "GET", path, None)
            if not isinstance(data, dict):
                raise RenderError(ErrorKind.API_ERROR, f"{name}: status answer is not a JSON object")
            status = str(data.get("status") or data.get("state") or "running").lower()
            if status in DONE:
                return {**shape_result(service.preset, data, name), "remote_id": remote_id}
            if status in FAILED:
                kind = data.get("error_kind")
                kind = ErrorKind(kind) if kind in {k.value for k in ErrorKind} else ErrorKind.API_ERROR
                detail = error_text(json.dumps(data).encode())
                raise RenderError(kind, f"{name}: remote job {remote_id} {status}: {detail}")
            raw = data.get("percent", data.get("progress"))
            percent_scale = percent_scale or (isinstance(raw, int | float) and raw > 1)
            percent = service_percent(data, percent_scale)
            if percent is not None and percent > best:
                best = min(percent, 99.0)
            ctx.progress(best, f"{name}: {status}")

    def _sleep(
        self, ctx: RenderContext, name: str, service: ServiceSettings, remote_id: str, secs: float
    ) -> None:
        end = time.monotonic() + secs
        while (left := end - time.monotonic()) > 0:
            if ctx.cancelled():
                self._cancel_remote(ctx, name, service, remote_id)
                raise RenderError(ErrorKind.CANCELED, f"canceled while waiting for {name} job {remote_id}")
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
                raise RenderError(ErrorKind.TIMEOUT, f"{name}: job {remote_id} still running at the deadline")
            time.sleep(min(left, 0.1))

    def _cancel_remote(self, ctx: RenderContext, name: str, service: ServiceSettings, remote_id: str) -> None:
        if service.cancel_path is None:
            return
        path = service.cancel_path.replace("{id}", quote(remote_id, safe=""))
        try:
            self._call(ctx, name, service, "POST", path, None, budget=3.0)
        except RenderError as exc:
            ctx.log(f"{name}: could not cancel remote job {remote_id}: {exc}")

    def _headers(self, name: str, service: ServiceSettings) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if service.auth_header and service.auth_env:
            secret = os.environ.get(service.auth_env)
            if not secret:
                raise RenderError(
                    ErrorKind.UNKNOWN, f"{name}: environment variable {service.auth_env} is not set"
                )
            headers[service.auth_header] = service.auth_prefix + secret
        return headers

    def _call(
        self,
        ctx: RenderContext,
        name: str,
        service: ServiceSettings,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        budget: float | None = None,
    ) -> Any:
        """One request; returns the decoded JSON (or text), raises a RenderError on any failure."""
        url = service.base_url + path
        read = service.read_timeout if budget is None else min(budget, service.read_timeout)
        if ctx.deadline is not None:
            left = ctx.deadline - time.monotonic()
            if left <= 0:
                raise RenderError(ErrorKind.TIMEOUT, f"{name}: deadline passed before {method} {url}")
            read = min(read, left)
        timeout = httpx.Timeout(read, connect=min(service.connect_timeout, read))
        limit = ctx.env.max_result_bytes
        try:
            with self.client.stream(
                method, url, json=body, headers=self._headers(name, service), timeout=timeout
            ) as response:
                failed = kind_for_status(response.status_code) is not None
                # an error's body only explains it: read a little; an answer must fit the limit
                content = read_body(response, ERROR_BODY_BYTES if failed else limit, cut=failed)
        except BodyTooLarge:
            raise RenderError(
                ErrorKind.API_ERROR,
                f"{name}: {method} {url} answered with a body over limits.max_result_bytes ({limit} bytes)",
            ) from None
        except httpx.TimeoutException as exc:
            raise RenderError(ErrorKind.TIMEOUT, f"{name}: {method} {url} timed out after {read:g}s") from exc
        except httpx.HTTPError as exc:
            what = type(exc).__name__
            raise RenderError(ErrorKind.API_ERROR, f"{name}: {method} {url} failed: {what}: {exc}") from exc
        error = error_for_response(response, name, content)
        if error is not None:
            raise error
        return decode_answer(content, response.charset_encoding, service.preset, f"{name}: {method} {url}")

    def doctor(self) -> Health:
        if not self.settings.services:
            return Health(True, "no services configured")
        states: list[str] = []
        ok = True
        for name, service in sorted(self.settings.services.items()):
            url = service.base_url + service.health_path
            try:
                timeout = httpx.Timeout(5.0, connect=min(3.0, service.connect_timeout))
                with self.client.stream("GET", url, timeout=timeout) as response:
                    pass  # the status is the answer; the body is never read
            except httpx.HTTPError as exc:
                ok = False
                states.append(f"{name}: unreachable ({type(exc).__name__})")
                continue
            healthy = response.is_success
            ok = ok and healthy
            states.append(f"{name}: {'ok' if healthy else f'HTTP {response.status_code}'}")
        return Health(ok, "; ".join(states))
