"""What a webhook receives: SPEC §12's JSON payload, or the same facts as a Slack message.

The JSON payload always has ``event`` (``finished``, ``failed`` or ``alert``), ``job_id``,
``name``, ``status``, ``error_kind``, ``error`` and ``outputs`` (name, size, sha256 and a signed
URL when farm serve runs), plus ``renderer``, ``job_type``, ``by`` and ``at``. An alert has
``job_id`` None, its kind as ``name`` (``queue_depth``, ``failures_per_hour``, ``avg_wait``),
``status`` ``firing`` or ``resolved`` and the reading as ``message``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from ..models import JobInfo, OutputFile

Format = Literal["json", "slack"]
MAX_ERROR_CHARS = 1000


def job_payload(info: JobInfo, outputs: list[OutputFile]) -> dict[str, Any]:
    ended = info.ended_at or datetime.now(UTC)
    return {
        "event": info.status.value,
        "job_id": info.id,
        "name": info.name,
        "status": info.status.value,
        "error_kind": info.error_kind.value if info.error_kind else None,
        "error": info.error[:MAX_ERROR_CHARS] if info.error else None,
        "outputs": [o.model_dump(mode="json") for o in outputs],
        "renderer": info.renderer,
        "job_type": info.job_type,
        "by": info.by,
        "at": ended.isoformat(),
    }


def alert_payload(kind: str, message: str, firing: bool) -> dict[str, Any]:
    return {
        "event": "alert",
        "job_id": None,
        "name": kind,
        "status": "firing" if firing else "resolved",
        "error_kind": None,
        "error": None,
        "outputs": [],
        "message": message,
        "at": datetime.now(UTC).isoformat(),
    }


def body(fmt: Format, payload: dict[str, Any]) -> dict[str, Any]:
    return {"text": slack_text(payload)} if fmt == "slack" else payload


def _slack_escape(text: object) -> str:
    # Slack's mrkdwn: only &, < and > are control characters (job names and errors are data)
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(payload: dict[str, Any]) -> str:
    if payload["event"] == "alert":
        mark = ":warning: *alert*" if payload["status"] == "firing" else ":large_green_circle: *resolved*"
        return f"{mark} {_slack_escape(payload['message'])}"
    title = _slack_escape(payload["name"] or payload["job_id"][:8])
    head = f"`{title}` ({_slack_escape(payload['renderer'])}, job {payload['job_id'][:8]})"
    if payload["event"] == "failed":
        error = _slack_escape((payload["error"] or "").splitlines()[0][:300] if payload["error"] else "")
        return f":x: *failed* {head}: {_slack_escape(payload['error_kind'])}: {error}"
    files = [
        f"<{o['url']}|{_slack_escape(o['name'])}>" if o.get("url") else _slack_escape(o["name"])
        for o in payload["outputs"][:10]
    ]
    more = f" (+{len(payload['outputs']) - 10} more)" if len(payload["outputs"]) > 10 else ""
    return f":white_check_mark: *finished* {head}" + (f": {', '.join(files)}{more}" if files else "")
