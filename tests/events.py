"""Replaying farm:events (slot starts/stops and cap changes, in server order) to check invariants."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from redis import Redis


def read_events(connection: Redis) -> list[dict[str, str]]:
    out = []
    for event_id, fields in connection.xrange("farm:events", "-", "+"):
        row = {k.decode(): v.decode() for k, v in fields.items()}
        row["id"] = event_id.decode()
        out.append(row)
    return out


@dataclass
class Replay:
    violations: list[str] = field(default_factory=list)
    starts: list[dict[str, str]] = field(default_factory=list)
    max_running: Counter[str] = field(default_factory=Counter)
    max_total: int = 0


def replay(events: list[dict[str, str]], total: int, caps: dict[str, int]) -> Replay:
    """Check that no start ever exceeded the caps in force and no job ran twice at once."""
    total_cap, renderer_caps = total, dict(caps)
    running: dict[str, str] = {}
    result = Replay()
    for event in events:
        kind = event["e"]
        if kind == "caps":
            for key, value in event.items():
                if key == "total":
                    total_cap = int(value)
                elif key.startswith("r:"):
                    if value == "":
                        renderer_caps.pop(key[2:], None)
                    else:
                        renderer_caps[key[2:]] = int(value)
        elif kind == "start":
            job, renderer = event["job"], event["r"]
            if job in running:
                result.violations.append(f"{job} started twice without a stop ({event['id']})")
            running[job] = renderer
            result.starts.append(event)
            in_use = sum(1 for r in running.values() if r == renderer)
            result.max_running[renderer] = max(result.max_running[renderer], in_use)
            result.max_total = max(result.max_total, len(running))
            if len(running) > total_cap:
                result.violations.append(f"total {len(running)} > cap {total_cap} at {event['id']}")
            cap = renderer_caps.get(renderer)
            if cap is not None and in_use > cap:
                result.violations.append(f"{renderer} {in_use} > cap {cap} at {event['id']}")
        elif kind == "stop" and running.pop(event["job"], None) is None:
            result.violations.append(f"{event['job']} stopped without running ({event['id']})")
    return result
