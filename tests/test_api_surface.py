"""The teammate API's public surface and its dependency rules."""

from __future__ import annotations

import subprocess
import sys

import farm
import farm.errors as errors
from farm import keys
from farm.outcomes import registry_key


def test_all_is_honest():
    for name in farm.__all__:
        assert hasattr(farm, name), name
    public = {n for n in dir(farm) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(farm.__all__), public - set(farm.__all__)


def test_exception_hierarchy():
    assert issubclass(errors.InvalidJobError, errors.FarmError)
    assert issubclass(errors.InvalidJobError, ValueError)
    assert issubclass(errors.UnknownRendererError, errors.InvalidJobError)
    for name in ("JobNotFoundError", "InvalidTransitionError", "FarmUnavailableError"):
        assert issubclass(getattr(errors, name), errors.FarmError)
        assert getattr(farm, name) is getattr(errors, name)


def test_farm_does_not_import_textual():
    code = (
        "import sys, farm, farm.worker, farm.cli, renderers, renderers.demo; print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_key_formats_match_rq():
    from redis import Redis
    from rq.queue import Queue
    from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
    from rq_scheduler import Scheduler

    conn = Redis()  # never connects: only key names are built
    assert Queue("high", connection=conn).key == keys.queue("high")
    assert FinishedJobRegistry("low", connection=conn).key == registry_key("finished", "low")
    assert FailedJobRegistry("low", connection=conn).key == registry_key("failed", "low")
    assert CanceledJobRegistry("low", connection=conn).key == registry_key("canceled", "low")
    assert StartedJobRegistry("low", connection=conn).key == registry_key("wip", "low")
    assert Scheduler.scheduled_jobs_key == keys.RQ_SCHEDULED
    from rq.job import Job

    assert Job.key_for("abc") == keys.job("abc")


def test_the_tui_is_found_through_its_entry_point_only():
    from app.app import run_tui
    from farm.up import load_ui

    assert load_ui() is run_tui
