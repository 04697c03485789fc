"""The webhook outbox in Redis: what is owed to which endpoint, and from where to read on.

Jobs' ends come from ``farm:events`` (``e=end``, written in the same MULTI as the end itself),
read after ``farm:notify:cursor``; the deliveries they make and the cursor's move are one
MULTI, so a scheduler killed between the two neither loses nor repeats an announcement. Alerts
are the [alerts] thresholds (``live.snapshot.threshold_alerts``, the TUI banner's own test)
compared with ``farm:notify:alerts``, the ones already announced: a crossing is announced once,
and its clearing once, however often the check runs. A delivery is a JSON string under
``farm:notify:d:<id>`` plus its due time in ``farm:notify:due``. Unreadable stored data is
logged and dropped, never raised: it must not stop the scheduler.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis

from .. import keys
from ..config import FarmConfig, WebhookConfig
from ..errors import FarmError
from ..files import jobs
from ..live.snapshot import threshold_alerts
from ..live.state import read_state, stats_from_state
from ..models import JobStatus
from ..records import info_from_hash
from . import payloads

log = logging.getLogger("farm.notify")

EVENTS_PER_PASS = 500
DELIVERY_TTL = 3 * 86_400  # a delivery nobody could make in 3 days is dropped with its key
STALE_CURSOR = 3600  # seconds: an older cursor (webhooks just turned on again) starts from now
LOG_KEEP = 200


@dataclass
class Delivery:
    id: str
    url: str
    format: payloads.Format
    event: str
    job_id: str | None
    body: dict[str, Any]
    attempt: int = 0  # tries made so far

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | None) -> Delivery | None:
        try:
            data = json.loads(raw or b"")
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None


def hooks_for(config: FarmConfig, event: str, job_type: str | None = None) -> list[WebhookConfig]:
    return [
        hook
        for hook in config.notify.webhooks
        if event in hook.events and (event == "alert" or not hook.job_types or job_type in hook.job_types)
    ]


def _deliveries(
    hooks: list[WebhookConfig], event: str, job_id: str | None, payload: dict[str, Any]
) -> list[Delivery]:
    return [
        Delivery(uuid.uuid4().hex, hook.url, hook.format, event, job_id, payloads.body(hook.format, payload))
        for hook in hooks
    ]


def _store(connection: Redis, deliveries: list[Delivery], cursor: str | None = None, **alerts: Any) -> None:
    now = time.time()
    with connection.pipeline() as pipe:
        for d in deliveries:
            pipe.set(keys.NOTIFY_DELIVERY + d.id, d.dumps(), ex=DELIVERY_TTL)
            pipe.zadd(keys.NOTIFY_DUE, {d.id: now})
        if cursor is not None:
            pipe.set(keys.NOTIFY_CURSOR, cursor)
        if alerts.get("fired"):
            pipe.hset(keys.NOTIFY_ALERTS, mapping=alerts["fired"])
        if alerts.get("cleared"):
            pipe.hdel(keys.NOTIFY_ALERTS, *alerts["cleared"])
        pipe.execute()


def _cursor(connection: Redis) -> str:
    """Where to read on; a missing or stale cursor starts at the stream's end (history before
    the webhooks were on is not announced)."""
    raw = connection.get(keys.NOTIFY_CURSOR)
    cursor = raw.decode("ascii", "replace") if raw else ""
    try:
        fresh = time.time() * 1000 - int(cursor.split("-")[0]) < STALE_CURSOR * 1000  # same host clock: rough
    except ValueError:
        fresh = False
    if fresh:
        return cursor
    last = connection.xrevrange(keys.EVENTS, count=1)
    seconds, micros = connection.time()  # stream ids are the server's milliseconds
    start = last[0][0].decode() if last else f"{seconds * 1000 + micros // 1000 - 1}-0"
    if cursor:
        log.warning("webhooks: cursor %r is stale or unreadable; announcing ends from now on", cursor[:40])
    connection.set(keys.NOTIFY_CURSOR, start)
    return start


def collect_ends(connection: Redis, config: FarmConfig) -> int:
    """Deliveries for the jobs that ended since the cursor; returns how many were made."""
    cursor = _cursor(connection)
    entries = connection.xrange(keys.EVENTS, min="(" + cursor, max="+", count=EVENTS_PER_PASS)
    if not entries:
        return 0
    made: list[Delivery] = []
    for _, fields in entries:
        status = fields.get(b"s", b"").decode("ascii", "replace")
        if fields.get(b"e") != b"end" or status not in (JobStatus.FINISHED.value, JobStatus.FAILED.value):
            continue
        made += _for_job(connection, config, fields.get(b"job", b"").decode("utf-8", "replace"), status)
    _store(connection, made, cursor=entries[-1][0].decode())
    return len(made)


def _for_job(connection: Redis, config: FarmConfig, job_id: str, status: str) -> list[Delivery]:
    raw = connection.hgetall(keys.job(job_id))
    if not raw:
        log.warning("webhooks: job %s ended but its record is gone; nothing announced", job_id[:40])
        return []
    info = info_from_hash(job_id, raw)
    hooks = hooks_for(config, status, info.job_type)
    if not hooks:
        return []
    try:
        outputs = jobs.outputs(connection, config, info)
    except FarmError as exc:  # an unreadable stored output name: announce the end without files
        log.warning("webhooks: outputs of %s not listed: %s", job_id, exc)
        outputs = []
    payload = payloads.job_payload(info.model_copy(update={"status": JobStatus(status)}), outputs)
    return _deliveries(hooks, status, job_id, payload)


def check_alerts(connection: Redis, config: FarmConfig) -> int:
    """Announce each threshold newly crossed (``firing``) or newly cleared (``resolved``)."""
    hooks = hooks_for(config, "alert")
    if not hooks:
        return 0
    crossed = threshold_alerts(config, stats_from_state(read_state(connection, config)))
    announced = {k.decode("utf-8", "replace") for k in connection.hkeys(keys.NOTIFY_ALERTS)}
    fired = {kind: message for kind, message in crossed.items() if kind not in announced}
    cleared = sorted(announced - crossed.keys())
    made: list[Delivery] = []
    for kind, message in fired.items():
        made += _deliveries(hooks, "alert", None, payloads.alert_payload(kind, message, firing=True))
    for kind in cleared:
        made += _deliveries(
            hooks,
            "alert",
            None,
            payloads.alert_payload(kind, f"{kind} back under its threshold", firing=False),
        )
    if fired or cleared:
        _store(connection, made, fired=fired, cleared=cleared)
    return len(made)


def due(connection: Redis, now: float, limit: int) -> list[Delivery]:
    ids = connection.zrangebyscore(keys.NOTIFY_DUE, 0, now, start=0, num=limit)
    found = []
    for raw_id in ids:
        delivery_id = raw_id.decode("ascii", "replace")
        delivery = Delivery.loads(connection.get(keys.NOTIFY_DELIVERY + delivery_id))
        if delivery is None:  # expired, or not ours to read: drop the due entry
            log.warning("webhooks: delivery %s unreadable or expired; dropped", delivery_id[:40])
            connection.zrem(keys.NOTIFY_DUE, raw_id)
            connection.delete(keys.NOTIFY_DELIVERY + delivery_id)
            continue
        found.append(delivery)
    return found


def settle(connection: Redis, delivery: Delivery, outcome: str, retry_at: float | None) -> None:
    """Record one try: done (``retry_at`` None) or due again at ``retry_at``; logged either way."""
    entry = {
        "at": time.time(),
        "delivery": delivery.id,
        "event": delivery.event,
        "job_id": delivery.job_id,
        "target": target(delivery.url),
        "attempt": delivery.attempt,
        "outcome": outcome,
    }
    with connection.pipeline() as pipe:
        if retry_at is None:
            pipe.zrem(keys.NOTIFY_DUE, delivery.id)
            pipe.delete(keys.NOTIFY_DELIVERY + delivery.id)
        else:
            pipe.set(keys.NOTIFY_DELIVERY + delivery.id, delivery.dumps(), ex=DELIVERY_TTL)
            pipe.zadd(keys.NOTIFY_DUE, {delivery.id: retry_at})
        pipe.lpush(keys.NOTIFY_LOG, json.dumps(entry))
        pipe.ltrim(keys.NOTIFY_LOG, 0, LOG_KEEP - 1)
        pipe.execute()


def target(url: str) -> str:
    """The URL as logs show it: scheme and host only (a Slack webhook's path is its secret)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}"


def recent(connection: Redis, count: int = 20) -> list[dict[str, Any]]:
    out = []
    for raw in connection.lrange(keys.NOTIFY_LOG, 0, count - 1):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out
