"""The teammate API's public surface and its dependency rules."""

from __future__ import annotations

import subprocess
import sys

import farm
import farm.errors as errors
from farm import keys
from farm.transitions import registry_key


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


def test_workers_and_the_api_import_no_http_client():
    """httpx (with the rich, pygments and click its CLI pulls in) costs every process ~0.2 s and
    ~7 MB, and a worker's RSS is paid again by every fork: it is imported when a file moves."""
    code = "import sys, farm, farm.worker.worker, farm.client; print('httpx' in sys.modules)"
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
    assert Job.dependents_key_for("abc") == keys.dependents("abc")
    assert Job("abc", connection=conn).dependencies_key == keys.dependencies("abc")
    from rq.registry import DeferredJobRegistry

    assert DeferredJobRegistry("low", connection=conn).key == keys.deferred("low")
    assert registry_key("canceled", "low") == keys.RQ_CANCELED + "low"


def test_the_tui_is_found_through_its_entry_point_only():
    from app.app import run_tui
    from farm.cli.up import load_ui

    assert load_ui() is run_tui


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, imported module) for every import statement under ``package``."""
    import ast
    from pathlib import Path

    found = set()
    for path in Path(package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path), alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path), node.module))
    return found


def test_dependencies_point_one_way():
    """farm/ imports neither the backends nor the UI; backends import only farm's contract."""
    farm_imports = _imports("farm")
    assert not {(f, m) for f, m in farm_imports if m.split(".")[0] in ("renderers", "app", "textual")}
    backend_imports = {(f, m) for f, m in _imports("renderers") if m.split(".")[0] == "farm"}
    assert {m for _, m in backend_imports} <= {"farm.render", "farm.models"}, backend_imports


def test_listing_renderers_imports_none_and_loading_one_imports_one():
    code = (
        "import sys; from farm.render import Registry; r = Registry(); names = r.names();"
        "before = {m for m in sys.modules if m.startswith('renderers')}; r.get('ffmpeg');"
        "after = {m for m in sys.modules if m.startswith('renderers.')};"
        "print(len(names), sorted(before), sorted(after))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, rest = out.stdout.split(" ", 1)
    assert int(count) >= 8
    assert rest.startswith("[] ")
    loaded = set(eval(rest[3:]))  # noqa: S307 - our own subprocess's repr of a list of names
    assert "renderers.ffmpeg" in loaded and "renderers.manim" not in loaded and "renderers.http" not in loaded


def test_lua_scripts_spell_no_key_field_or_constant_themselves():
    """Every key, farm_* field and shared constant reaches the scripts through the generated
    header (farm/scripts.py), so keys.py stays the one place they are spelled."""
    import re
    from pathlib import Path

    from farm.scripts import header, source

    for path in Path("farm/lua").glob("*.lua"):
        code = "\n".join(line.split("--")[0] for line in path.read_text().splitlines())
        assert not re.search(r"'(farm|rq):[a-z_:]*'", code), path
        assert not re.search(r"'farm_[a-z_]+'", code), path
        assert "20000" not in code and "1e13" not in code, path
        assert source(path.stem).startswith(header())
    assert 'HELD = "farm:held:"' in header() and "BAND = 10000000000000" in header()


def test_the_layout_stays_livable():
    """No module over 500 lines; at most 20 modules at farm/'s top level (the rest in rooms)."""
    from pathlib import Path

    too_long = {
        str(p): n
        for root in ("farm", "renderers", "app")
        for p in Path(root).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert too_long == {}
    assert len(list(Path("farm").glob("*.py"))) <= 20
