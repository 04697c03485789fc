"""The pure half of the http renderer: payload checks, request bodies, answers mapped to results
and status codes mapped to error kinds (SPEC §6). Used by ``renderers.http``; tested without I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from farm.models import ErrorKind
from farm.render import RenderError

from .paths import is_text, show

ID_KEYS = ("id", "job_id", "task_id")
MAX_ERROR_CHARS = 300
MAX_JSON_DEPTH = 64  # for payloads and answers; real ones are a few levels deep


class OrchestratorPayload(BaseModel):
    """What the seeds' orchestrator expects besides ``job_id`` (which the farm supplies)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job_type: str | None = Field(default=None, min_length=1)  # default: the farm job's job_type
    input: str | dict[str, Any]
    style: str = Field(min_length=1)
    length: int | float | str  # seconds, or a label such as "short"
    voice: str = Field(min_length=1)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if not value or (isinstance(value, str) and not value.strip()):
            raise ValueError("input must not be empty")
        return value


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


def check_tree(value: Any, *, max_depth: int = MAX_JSON_DEPTH, what: str = "payload") -> None:
    """Refuse JSON nested deeper than ``max_depth`` (``json.dumps`` would hit Python's recursion
    limit) or holding text no JSON body can carry (lone surrogates); walks without recursion."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                raise _invalid(f"{what} is nested more than {max_depth} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else list(item)
            todo.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and not is_text(item):
            raise _invalid(f"{what} holds text that is not valid UTF-8: {show(item, 60)}")


def check_payload(preset: str, payload: Mapping[str, Any], max_bytes: int) -> None:
    """Pure checks on a job's payload: JSON-able, within size, and the preset's shape."""
    check_tree(payload)
    try:
        size = len(json.dumps(payload, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:  # ValueError: NaN, or an int past 4300 digits
        raise _invalid(f"payload is not plain JSON: {str(exc)[:200]}") from exc
    if size > max_bytes:
        raise _invalid(f"payload is {size} bytes, over the {max_bytes}-byte limit")
    if preset == "orchestrator":
        try:
            OrchestratorPayload.model_validate(dict(payload))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "payload"
            raise _invalid(f"payload.{show(where, 80)[1:-1]}: {first['msg']}") from exc


def build_body(preset: str, payload: Mapping[str, Any], job_id: str, job_type: str | None) -> dict[str, Any]:
    """The JSON body to POST: the orchestrator contract, or the payload as is."""
    if preset != "orchestrator":
        return dict(payload)
    job_type = payload.get("job_type") or job_type
    if not job_type:
        raise _invalid("orchestrator payload needs a job_type (none given and the job has none)")
    keys = ("input", "style", "length", "voice")
    return {"job_id": job_id, "job_type": job_type, **{key: payload[key] for key in keys}}


def kind_for_status(code: int) -> ErrorKind | None:
    """SPEC §6: 5xx → api_error, 404 → not_found, other 4xx → invalid_input (408/429 retryable)."""
    if 200 <= code < 300:
        return None
    if code == 404:
        return ErrorKind.NOT_FOUND
    if code == 408:
        return ErrorKind.TIMEOUT
    if code == 429 or code >= 500 or code < 400:
        return ErrorKind.API_ERROR
    return ErrorKind.INVALID_INPUT


def error_text(body: bytes) -> str:
    """The service's explanation: JSON ``error``/``detail``/``message``, else the text, truncated."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text[:1] in "{[" and text else None
    except (ValueError, RecursionError):  # not JSON, or JSON nested past Python's recursion limit
        data = None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("detail") or json.dumps(value)
            if isinstance(value, list):  # FastAPI-style validation errors
                value = "; ".join(
                    str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in value
                )
            if value:
                text = str(value)
                break
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def error_for_response(
    response: httpx.Response, service: str, body: bytes | None = None
) -> RenderError | None:
    kind = kind_for_status(response.status_code)
    if kind is None:
        return None
    try:
        where = f"{response.request.method} {response.request.url}"
    except RuntimeError:  # a Response built by hand has no request
        where = "the service"
    detail = error_text(response.content if body is None else body) or response.reason_phrase
    return RenderError(kind, f"{service}: HTTP {response.status_code} from {where}: {detail}")


def extract_id(data: Any) -> str:
    if isinstance(data, dict):
        for key in ID_KEYS:
            value = data.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    raise RenderError(ErrorKind.API_ERROR, f"async service answered without an id ({', '.join(ID_KEYS)})")


def service_percent(data: Mapping[str, Any], percent_scale: bool = False) -> float | None:
    """Progress a status answer reports, as 0–100. A float ≤ 1 is a fraction unless the service
    already showed (``percent_scale``) it counts in percent."""
    value = data.get("percent", data.get("progress"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if "percent" not in data and isinstance(value, float) and value <= 1.0 and not percent_scale:
        value *= 100.0
    return max(0.0, min(100.0, float(value)))


def shape_result(preset: str, data: Any, service: str) -> dict[str, Any]:
    """The job result from a final answer (a sync response or a finished status)."""
    if preset != "orchestrator":
        return {"outputs": [], "service": service, "response": data}
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        data = data["result"]
    if not isinstance(data, dict) or not isinstance(data.get("video_url"), str) or not data["video_url"]:
        raise RenderError(ErrorKind.API_ERROR, f"{service}: answer has no video_url: {str(data)[:200]}")
    keys = ("video_url", "thumbnail_url", "duration", "processing_time_ms")
    result: dict[str, Any] = {key: data.get(key) for key in keys}
    urls = [url for url in (result["video_url"], result["thumbnail_url"]) if isinstance(url, str) and url]
    return {"outputs": [], "urls": urls, "service": service, **result}


def decode_answer(content: bytes, charset: str | None, preset: str, what: str) -> Any:
    """A successful answer's body: JSON, or for ``generic`` services plain text as well."""
    try:
        data = json.loads(content)
    except RecursionError:
        raise RenderError(ErrorKind.API_ERROR, f"{what} answered with JSON nested too deeply") from None
    except ValueError:
        if preset == "generic":
            try:
                return content.decode(charset or "utf-8", errors="replace")
            except LookupError:  # a charset Python does not know
                return content.decode("utf-8", errors="replace")
        raise RenderError(ErrorKind.API_ERROR, f"{what} answered with non-JSON") from None
    try:  # the answer becomes the job's result, which the farm stores as JSON
        check_tree(data, what="the answer")
    except RenderError as exc:
        raise RenderError(ErrorKind.API_ERROR, f"{what}: {exc.message}") from None
    return data
