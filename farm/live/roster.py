"""Who is working: RQ's worker registrations joined with the farm's heartbeats and slots."""

from __future__ import annotations

import time

from redis import Redis
from rq.serializers import JSONSerializer
from rq.worker import Worker

from .. import keys
from ..config import FarmConfig
from ..models import WorkerInfo
from ..records import Slot
from ..rq_classes import FarmJob, FarmQueue
from ..timeutil import from_ts


def list_workers(connection: Redis, config: FarmConfig) -> list[WorkerInfo]:
    now = time.time()
    beats = {
        m.decode("utf-8", "replace"): s for m, s in connection.zrange(keys.HEARTBEATS, 0, -1, withscores=True)
    }
    current = {}
    for job_id, value in connection.hgetall(keys.SLOTS).items():
        slot = Slot.parse(job_id, value)
        current[slot.worker] = slot.job_id
    infos = []
    for worker in Worker.all(
        connection=connection, job_class=FarmJob, queue_class=FarmQueue, serializer=JSONSerializer
    ):
        beat = beats.get(worker.name)
        alive = beat is not None and now - beat < config.scheduler.worker_timeout
        infos.append(
            WorkerInfo(
                name=worker.name,
                host=worker.hostname,
                pid=worker.pid,
                state=str(worker.get_state()) if alive else "dead",
                current_job=current.get(worker.name),
                last_heartbeat=from_ts(beat) if beat is not None else worker.last_heartbeat,
                alive=alive,
            )
        )
    infos.sort(key=lambda w: (not w.alive, w.name))
    return infos
