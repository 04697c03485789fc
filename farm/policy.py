"""The farm's published policy: the render host's config, in Redis for every box and teammate.

``farm up`` and ``farm scheduler`` publish their config's policy sections when they start
(``farm worker`` only when nothing is published yet), in ``farm:policy`` with a version that goes
up whenever the content changes. ``Farm.connect`` reads it, so a teammate needs no config file
and a submitter's own file cannot change the farm's rules:

- ``FARM_WIDE`` sections (job types, retries, timeouts, retention, limits) replace the local ones
  for everyone: the API, and workers on any box;
- ``SUBMIT_SIDE`` (renderer settings, plugins, input roots) replace them where submits are
  validated, so service and template names and the roots are the render host's; workers keep
  their own (executables and paths are per box).

Reading never raises: a missing or unreadable record means "nothing published" (defaults), and
``farm doctor`` says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.exceptions import WatchError

from . import keys
from .config import FarmConfig
from .records import safe_json

log = logging.getLogger("farm.policy")

FARM_WIDE = ("queues", "retry", "timeouts", "retention", "limits")
SUBMIT_SIDE = ("renderers", "plugins")


@dataclass(frozen=True)
class Published:
    version: int
    host: str
    at: float
    sections: dict[str, Any]  # section name -> its JSON (and "input_roots")


def policy_of(config: FarmConfig) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    sections = {name: dumped[name] for name in (*FARM_WIDE, *SUBMIT_SIDE)}
    sections["input_roots"] = [str(root) for root in config.input_roots]
    return sections


def publish(connection: Redis, config: FarmConfig, *, only_if_absent: bool = False) -> int:
    """Publish ``config``'s policy; returns the version in force afterwards."""
    body = json.dumps(policy_of(config), sort_keys=True)
    digest = hashlib.sha256(body.encode()).hexdigest()
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.POLICY)
                current = pipe.hmget(keys.POLICY, "version", "digest")
                version = int(current[0]) if current[0] and current[0].isdigit() else 0
                if (only_if_absent and version) or current[1] == digest.encode():
                    pipe.unwatch()
                    return version
                pipe.multi()
                pipe.hset(
                    keys.POLICY,
                    mapping={
                        "version": version + 1,
                        "digest": digest,
                        "config": body,
                        "host": socket.gethostname(),
                        "at": repr(time.time()),
                    },
                )
                pipe.execute()
                log.info("published the farm's policy, version %d", version + 1)
                return version + 1
            except WatchError:
                continue


def read(connection: Redis) -> Published | None:
    """The published policy, or None (never published, or unreadable)."""
    raw = connection.hgetall(keys.POLICY)
    try:
        sections = safe_json(raw.get(b"config"))
        version = int(raw.get(b"version", b"0"))
        at = float(raw.get(b"at", b"0"))
    except ValueError:
        return None
    if not isinstance(sections, dict) or version < 1:
        return None
    return Published(version, raw.get(b"host", b"?").decode("utf-8", "replace"), at, sections)


def apply(local: FarmConfig, published: Published | None, *, submit_side: bool) -> FarmConfig:
    """``local`` with the farm's policy in place of its own (FARM_WIDE always; SUBMIT_SIDE and the
    input roots too when ``submit_side``). An unreadable published section is ignored."""
    if published is None:
        return local
    names = FARM_WIDE + (SUBMIT_SIDE if submit_side else ())
    data = local.model_dump(mode="json")
    for name in names:
        if name in published.sections:
            data[name] = published.sections[name]
    if submit_side and isinstance(published.sections.get("input_roots"), list):
        data["paths"] = {**data["paths"], "input_roots": published.sections["input_roots"]}
    try:
        merged = FarmConfig.model_validate(data)
    except ValidationError:
        log.warning(
            "the published policy (version %d) cannot be read; using local settings", published.version
        )
        return local
    return merged.model_copy(update={"source": local.source})
