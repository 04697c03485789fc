"""Place in line, wait reason and ETA of a job, from the farm state and the job's position.

The line is the one ``dispatch.lua`` serves: priority first; within a priority, jobs held back
by their renderer's cap come before the queue (they reached the head earlier), then the queue in
FIFO order. The ETA is an estimate: slots free up as running jobs finish (their progress tells
when) and each later slot takes the renderer's average run time of the last hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis

from .. import keys
from ..models import PRIORITY_ORDER, JobInfo, JobStatus, Priority
from ..pipelines import deps
from .state import FarmState

DEFAULT_RUN_SECONDS = 60.0


def position(
    connection: Redis, state: FarmState, job_id: str, priority: Priority, renderer: str
) -> int | None:
    """1-based place in line among all queued jobs, or None if the job is not waiting in line."""
    rank = priority.rank + 1
    ahead = 0
    for p in PRIORITY_ORDER[: priority.rank]:
        ahead += state.queued(p.value)
    score = connection.zscore(keys.held(renderer), job_id)
    if score is not None:
        band_start = rank * keys.HELD_BAND
        with connection.pipeline(transaction=False) as pipe:
            for other in state.held:
                pipe.zcount(keys.held(other), band_start, f"({score}")
            ahead += sum(pipe.execute())
        return ahead + 1
    index = connection.lpos(keys.queue(priority.value), job_id)
    if index is None:
        return None
    ahead += sum(bands.get(priority.value, 0) for bands in state.held.values())
    return ahead + int(index) + 1


def wait_reason(state: FarmState, priority: Priority, renderer: str, place: int | None) -> str:
    caps = state.caps
    if priority.value in state.paused:
        return "queue paused"
    used = state.used_by_renderer.get(renderer, 0)
    cap = caps.effective_renderers.get(renderer)
    if cap is not None and used >= cap:
        return f"{renderer} cap {used}/{cap}"
    if state.used_total >= caps.effective_total:
        return f"total cap {state.used_total}/{caps.effective_total}"
    if not state.workers_alive:
        return "no workers"
    busy = {slot.worker for slot in state.slots}
    if all(worker in busy for worker in state.workers_alive):
        return f"all {len(state.workers_alive)} workers busy"
    if place and place > 1:
        return f"behind {place - 1} job{'s' if place > 2 else ''}"
    return "starting"


def average_run(state: FarmState, renderer: str) -> float:
    return state.average("run", renderer) or state.average("run") or DEFAULT_RUN_SECONDS


def parallelism(state: FarmState, renderer: str) -> int:
    limits = [state.caps.effective_total, max(1, len(state.workers_alive))]
    cap = state.caps.effective_renderers.get(renderer)
    if cap is not None:
        limits.append(cap)
    return max(1, min(limits))


def running_eta(
    state: FarmState, started_at: datetime | None, progress: float, renderer: str
) -> datetime | None:
    """Estimated finish of a running job."""
    if started_at is None:
        return None
    now = datetime.fromtimestamp(state.at, UTC)
    elapsed = max(0.0, (now - started_at).total_seconds())
    total = elapsed * 100.0 / progress if progress >= 5 else max(elapsed, average_run(state, renderer))
    return started_at + timedelta(seconds=total)


def lanes(state: FarmState, renderer: str) -> list[float]:
    """Seconds from now until each of the renderer's parallel lanes is free: a busy lane frees
    when its running job ends (estimated from the average run), an idle one is free now."""
    run = average_run(state, renderer)
    busy = sorted(max(0.0, run - (state.at - s.started)) for s in state.slots if s.renderer == renderer)
    width = parallelism(state, renderer)
    return busy[:width] + [0.0] * max(0, width - len(busy))


def take_lane(state: FarmState, lane: list[float], renderer: str) -> datetime:
    """The start of the next job on these lanes (and the lane is then busy one average run)."""
    start = min(lane)
    lane[lane.index(start)] = start + average_run(state, renderer)
    return datetime.fromtimestamp(state.at + start, UTC)


def can_start(state: FarmState) -> bool:
    return bool(state.workers_alive) and state.caps.effective_total > 0


def queued_eta(state: FarmState, renderer: str, place: int) -> datetime | None:
    """Estimated start of a queued job that is ``place``-th in line, counting the jobs ahead as
    jobs of its renderer (the TUI, which sees the line, counts each renderer's own)."""
    if not can_start(state):
        return None
    lane = lanes(state, renderer)
    for _ in range(place - 1):
        take_lane(state, lane, renderer)
    return take_lane(state, lane, renderer)


def place_job(connection: Redis, state: FarmState, info: JobInfo) -> JobInfo:
    """The JobInfo with position, eta and wait_reason filled in for its status."""
    if info.status is JobStatus.QUEUED and info.after:
        reason = deps.wait_reason(info.after, deps.read_statuses(connection, info.after))
        if reason is not None:  # still waiting for a dependency: not in line yet
            return info.model_copy(update={"wait_reason": reason})
    if info.status is JobStatus.QUEUED:
        place = position(connection, state, info.id, info.priority, info.renderer)
        reason = wait_reason(state, info.priority, info.renderer, place)
        eta = queued_eta(state, info.renderer, place) if place and reason != "queue paused" else None
        return info.model_copy(update={"position": place, "wait_reason": reason, "eta": eta})
    if info.status is JobStatus.SCHEDULED and info.retry_at is not None:
        local = info.retry_at.astimezone()
        return info.model_copy(update={"wait_reason": f"retry at {local:%H:%M:%S}", "eta": info.retry_at})
    if info.status is JobStatus.RUNNING:
        return info.model_copy(
            update={"eta": running_eta(state, info.started_at, info.progress, info.renderer)}
        )
    return info
