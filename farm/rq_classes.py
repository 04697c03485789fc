"""RQ's Job and Queue with the JSON serializer as their default, and the farm's queue names.

Every RQ object the farm (and rq-scheduler, through ``job_class``/``queue_class``) creates goes
through these classes, so nothing is ever pickled. ``DISPATCHER`` is the function name stored in
every farm job and the only one a farm worker will run: a tag kept from the farm's first release
(so stored jobs stay valid), which ``FarmJob.func`` maps to ``farm.worker.rendering.run``. RQ
never imports a job's function by its stored name here.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from .models import PRIORITY_ORDER

DISPATCHER = "farm.dispatch.run"
QUEUE_NAMES: tuple[str, ...] = tuple(p.value for p in PRIORITY_ORDER)


class FarmJob(Job):
    """An RQ job that reads and writes JSON unless told otherwise.

    ``farm_fields`` (set only on the submit path) are written in the same HSET as RQ's own
    fields, so a submit costs one hash write per job.
    """

    farm_fields: dict[str, Any] | None = None

    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None) -> None:
        super().__init__(id, connection=connection, serializer=serializer or JSONSerializer)

    @property
    def func(self) -> Any:
        if self.func_name != DISPATCHER:
            raise ValueError(f"refusing to run {self.func_name!r}: not the farm dispatcher")
        from .worker.rendering import run  # the worker package, loaded only where jobs run

        return run

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        fields = super().to_dict(include_meta=include_meta, include_result=include_result)
        if self.farm_fields:
            fields.update(self.farm_fields)
        return fields


class FarmQueue(Queue):
    """An RQ queue of FarmJobs, JSON-serialized."""

    job_class = FarmJob

    def __init__(self, name: str = "default", *args: Any, **kwargs: Any) -> None:
        if kwargs.get("serializer") is None:
            kwargs["serializer"] = JSONSerializer
        if kwargs.get("job_class") is None:
            kwargs["job_class"] = FarmJob
        super().__init__(name, *args, **kwargs)
