"""Webhooks as an operator meets them: a real ``farm scheduler`` process POSTing to a real local
HTTP server. Jobs' ends (JSON and Slack), the job_types filter, retries with backoff, giving up,
alerts once per crossing, a hanging endpoint that must not stall the scheduler, and stored junk
that must not stop the notifier."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from redis import Redis

from farm import Farm, keys
from farm.cli.doctor import run_checks
from farm.errors import ConfigError
from farm.notify import outbox
from tests.util import wait_for

JOB_KEYS = {"event", "job_id", "name", "status", "error_kind", "error", "outputs"}


@dataclass
class Receiver:
    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> answers of 500 before a 200
    hang: set[str] = field(default_factory=set)  # paths that never answer in time

    def at(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            call = {"path": self.path, "body": body, "headers": dict(self.headers), "at": time.time()}
            state.calls.append(call)
            if self.path in state.hang:
                time.sleep(3)
            failing = state.fail_first.get(self.path, 0)
            state.fail_first[self.path] = max(0, failing - 1)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def notify(*hooks: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"backoff": 0.3, "alert_check": 0.2, "timeout": 1.0, **settings, "webhooks": list(hooks)}


def start_scheduler(procs: Any, connection: Redis) -> None:
    procs.scheduler()
    wait_for(lambda: connection.exists(keys.NOTIFY_CURSOR), timeout=20, what="the notifier's cursor")


def test_finished_and_failed_jobs_reach_their_webhooks(
    make_config, connection: Redis, redis_url, procs, burst
):
    with receiver() as hooks:
        config = make_config(
            notify=notify(
                {"url": f"{hooks.url}/all", "events": ["finished", "failed"]},
                {"url": f"{hooks.url}/slack", "events": ["failed"], "format": "slack"},
                {"url": f"{hooks.url}/doubts", "events": ["finished"], "job_types": ["doubt"]},
            )
        )
        start_scheduler(procs, connection)
        farm = Farm(connection, config, url=redis_url, who="ana")
        done = farm.submit("demo", {"duration": 0}, name="intro", job_type="doubt")
        plain = farm.submit("demo", {"duration": 0}, name="outro")
        failed = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"}, name="bad <scene> & co")
        burst()
        wait_for(
            lambda: len(hooks.at("/all")) == 3 and hooks.at("/slack") and hooks.at("/doubts"), timeout=20
        )
        time.sleep(1.0)  # nothing more arrives
    by_job = {c["body"]["job_id"]: c for c in hooks.at("/all")}
    assert set(by_job) == {done, plain, failed}
    for call in by_job.values():
        assert set(call["body"]) >= JOB_KEYS and call["headers"]["X-Farm-Event"] == call["body"]["event"]
        assert call["headers"]["Content-Type"] == "application/json"
    assert by_job[done]["body"] | {"at": None, "outputs": None} == by_job[done]["body"] | {
        "event": "finished",
        "name": "intro",
        "status": "finished",
        "error_kind": None,
        "error": None,
        "renderer": "demo",
        "job_type": "doubt",
        "by": "ana",
        "at": None,
        "outputs": None,
    }
    assert isinstance(by_job[done]["body"]["outputs"], list)
    assert (
        by_job[failed]["body"]["status"] == "failed"
        and by_job[failed]["body"]["error_kind"] == "invalid_input"
    )
    assert by_job[failed]["body"]["error"]
    [slack] = hooks.at("/slack")
    assert set(slack["body"]) == {"text"} and ":x: *failed*" in slack["body"]["text"]
    assert "bad &lt;scene&gt; &amp; co" in slack["body"]["text"]  # job data cannot make Slack markup
    assert [c["body"]["job_id"] for c in hooks.at("/doubts")] == [done]
    logged = outbox.recent(connection, 50)
    assert len(logged) == 5 and all(e["outcome"] == "delivered: HTTP 200" for e in logged)
    assert {e["target"] for e in logged} == {hooks.url}  # scheme and host only, never the path
    assert connection.zcard(keys.NOTIFY_DUE) == 0
    checks, _ = run_checks(config)
    [doctor] = [c for c in checks if c.check == "webhooks"]
    assert doctor.status == "ok" and "3 endpoint(s), 0 delivery(ies) waiting; last:" in doctor.detail


def test_a_failing_endpoint_is_retried_with_backoff_then_given_up(
    make_config, connection, redis_url, procs, burst
):
    with receiver() as hooks:
        hooks.fail_first = {"/flaky": 2, "/down": 99}
        config = make_config(
            notify=notify(
                {"url": f"{hooks.url}/flaky", "events": ["failed"]},
                {"url": f"{hooks.url}/down", "events": ["failed"]},
                max_attempts=3,
            )
        )
        # junk left in the outbox must not stop the notifier
        connection.zadd(keys.NOTIFY_DUE, {"no-such-delivery": 0})
        connection.set(keys.NOTIFY_DELIVERY + "junk", b"\xff{not json")
        connection.zadd(keys.NOTIFY_DUE, {"junk": 0})
        start_scheduler(procs, connection)
        farm = Farm(connection, config, url=redis_url)
        job = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
        burst()
        wait_for(lambda: len(hooks.at("/flaky")) == 3 and len(hooks.at("/down")) == 3, timeout=30)
        time.sleep(2.0)  # no fourth try anywhere
    flaky, down = hooks.at("/flaky"), hooks.at("/down")
    assert len(flaky) == 3 and len(down) == 3
    assert len({c["headers"]["X-Farm-Delivery"] for c in flaky}) == 1  # one delivery, tried 3 times
    gaps = [b["at"] - a["at"] for a, b in zip(flaky, flaky[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # backoff, then twice the backoff
    outcomes = [(e["target"], e["attempt"], e["outcome"]) for e in reversed(outbox.recent(connection, 50))]
    assert [o for o in outcomes if o[2].startswith("gave up")] == [(hooks.url, 3, "gave up: HTTP 500")]
    assert [o[2] for o in outcomes].count("delivered: HTTP 200") == 1
    assert all(e["job_id"] == job for e in outbox.recent(connection, 50))
    ids = {c["headers"]["X-Farm-Delivery"] for c in flaky + down} | {"junk"}
    assert connection.zcard(keys.NOTIFY_DUE) == 0
    assert not any(connection.exists(keys.NOTIFY_DELIVERY + i) for i in ids)


def test_an_alert_fires_once_per_crossing_and_once_when_it_clears(
    make_config, connection, redis_url, procs, burst
):
    with receiver() as hooks:
        config = make_config(
            alerts={"queue_depth": 2},
            notify=notify({"url": f"{hooks.url}/ops", "events": ["alert"]}),
        )
        start_scheduler(procs, connection)
        farm = Farm(connection, config, url=redis_url)

        def queue(n: int) -> None:
            for _ in range(n):
                farm.submit("demo", {"duration": 0}, priority="low")

        def statuses() -> list[str]:
            return [c["body"]["status"] for c in hooks.at("/ops") if c["body"]["name"] == "queue_depth"]

        queue(3)
        wait_for(lambda: statuses() == ["firing"], timeout=15)
        queue(2)
        time.sleep(1.5)  # several checks while still crossed: no second announcement
        assert statuses() == ["firing"]
        burst()
        wait_for(lambda: statuses() == ["firing", "resolved"], timeout=15)
        time.sleep(1.0)
        queue(3)
        wait_for(lambda: statuses() == ["firing", "resolved", "firing"], timeout=15)
    first = hooks.at("/ops")[0]["body"]
    assert first["event"] == "alert" and first["job_id"] is None and "queue depth 3 > 2" in first["message"]
    assert set(first) >= JOB_KEYS


def test_a_hanging_endpoint_does_not_stall_the_scheduler(
    make_config, connection: Redis, redis_url, procs, burst
):
    """Deliveries run beside the scheduler's ticks: retries and sweeps go on while one hangs."""
    with receiver() as hooks:
        hooks.hang = {"/slow"}
        config = make_config(notify=notify({"url": f"{hooks.url}/slow", "events": ["failed"]}, timeout=2.0))
        start_scheduler(procs, connection)
        farm = Farm(connection, config, url=redis_url)
        for _ in range(3):
            farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"})
        burst()
        wait_for(lambda: hooks.at("/slow"), timeout=15)
        ages = []
        for _ in range(20):  # 2 s while the endpoint hangs
            now = float(connection.time()[0]) + connection.time()[1] / 1e6
            ages.append(now - float(connection.get(keys.SCHEDULER_HEARTBEAT)))
            time.sleep(0.1)
    assert max(ages) < 1.0, ages  # the scheduler ticks every 0.2 s here
    assert any("ReadTimeout" in e["outcome"] for e in outbox.recent(connection, 20))


def test_webhook_config_is_checked(make_config):
    with pytest.raises(ConfigError) as err:
        make_config(notify={"webhooks": [{"url": "file:///etc/passwd", "events": ["failed"]}]})
    assert "notify.webhooks" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        make_config(notify={"webhooks": [{"url": "http://x", "events": ["started"]}]})


def test_workers_never_deliver_webhooks():
    """A render's path never waits on a webhook: nothing under farm/worker imports farm.notify."""
    import ast
    from pathlib import Path

    for path in Path("farm/worker").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any("notify" in n for n in names), (path, names)
