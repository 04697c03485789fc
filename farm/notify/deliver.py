"""The notifier: a thread of ``farm scheduler`` that fills the outbox and makes due deliveries.

One scheduler farm-wide does it (``farm:notify:lock``, renewed while it runs). A try is a POST
with the body as JSON, ``X-Farm-Event`` and ``X-Farm-Delivery`` (the same id on every try, so a
receiver can drop repeats: delivery is at least once), no redirects followed. A 2xx answer ends
it; anything else is tried again after ``notify.backoff`` × 2^(tries-1) seconds, up to
``notify.max_attempts`` tries. Each try is logged (``farm.notify`` logger, and the last 200 in
``farm:notify:log``).
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import metadata

import httpx
from redis import Redis
from redis.exceptions import RedisError

from .. import keys
from ..config import FarmConfig
from . import outbox

log = logging.getLogger("farm.notify")

PASS_EVERY = 1.0  # seconds between passes
PER_PASS = 20  # deliveries tried per pass at most
LOCK_MS = 60_000


class Notifier(threading.Thread):
    def __init__(self, connection: Redis, config: FarmConfig, name: str, stop: threading.Event) -> None:
        super().__init__(name="farm-notify", daemon=True)
        self.connection = connection
        self.config = config
        self.owner = name
        self.stopping = stop
        self.next_alert_check = 0.0
        self.client = httpx.Client(
            timeout=config.notify.timeout,
            follow_redirects=False,
            headers={"User-Agent": f"farm/{metadata.version('farm')}"},
        )

    def run(self) -> None:
        log.info("webhooks: %d endpoint(s); delivering from farm:notify", len(self.config.notify.webhooks))
        try:
            while not self.stopping.is_set():
                try:
                    self.pass_once()
                except RedisError as exc:
                    log.debug("webhooks: Redis unavailable (%s)", exc)
                except Exception:  # bad data must never stop the notifier: log it, go on
                    log.exception("webhooks: unexpected error in a pass; carrying on")
                self.stopping.wait(PASS_EVERY)
        finally:
            self.client.close()
            try:
                if self.connection.get(keys.NOTIFY_LOCK) == self.owner.encode():
                    self.connection.delete(keys.NOTIFY_LOCK)
            except RedisError:
                pass

    def _hold_lock(self) -> bool:
        if self.connection.set(keys.NOTIFY_LOCK, self.owner, nx=True, px=LOCK_MS):
            return True
        if self.connection.get(keys.NOTIFY_LOCK) == self.owner.encode():
            self.connection.pexpire(keys.NOTIFY_LOCK, LOCK_MS)
            return True
        return False

    def pass_once(self) -> None:
        if not self._hold_lock():
            return
        outbox.collect_ends(self.connection, self.config)
        now = time.time()
        if now >= self.next_alert_check:
            self.next_alert_check = now + self.config.notify.alert_check
            outbox.check_alerts(self.connection, self.config)
        deadline = time.monotonic() + LOCK_MS / 2000
        for delivery in outbox.due(self.connection, time.time(), PER_PASS):
            if self.stopping.is_set() or time.monotonic() > deadline:
                break
            self.attempt(delivery)

    def attempt(self, delivery: outbox.Delivery) -> bool:
        delivery.attempt += 1
        where = outbox.target(delivery.url)
        try:
            response = self.client.post(
                delivery.url,
                json=delivery.body,
                headers={"X-Farm-Event": delivery.event, "X-Farm-Delivery": delivery.id},
            )
            ok, outcome = response.is_success, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, outcome = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        about = f"{delivery.event} {delivery.job_id or ''}".strip()
        if ok:
            log.info("webhook %s to %s: delivered (%s, try %d)", about, where, outcome, delivery.attempt)
            outbox.settle(self.connection, delivery, f"delivered: {outcome}", None)
            return True
        notify = self.config.notify
        if delivery.attempt >= notify.max_attempts:
            log.error(
                "webhook %s to %s: gave up after %d tries (%s)", about, where, delivery.attempt, outcome
            )
            outbox.settle(self.connection, delivery, f"gave up: {outcome}", None)
            return False
        wait = notify.backoff * 2 ** (delivery.attempt - 1)
        log.warning(
            "webhook %s to %s: %s (try %d); again in %.0fs", about, where, outcome, delivery.attempt, wait
        )
        outbox.settle(self.connection, delivery, f"failed: {outcome}", time.time() + wait)
        return False
