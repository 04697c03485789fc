"""The operator's CLI: show with the log tail, logs -f, workers, audit, doctor --json, --version,
one name for the process count, help on every option, and shell completion (renderer names from
the config, job ids from Redis, nothing raised when Redis is down)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import click
import pytest
from click.shell_completion import ShellComplete

from farm import Farm, JobStatus
from farm.cli.commands import cli
from farm.cli.views import new_lines
from tests.test_cli import farm_cli
from tests.util import run_burst, wait_workers


def walk(command: click.Command, path: str = "farm") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += walk(sub, f"{path} {name}")
    return found


def test_every_option_has_help():
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in walk(cli)
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []


def test_version():
    out = farm_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("farm ") and out.stdout.split()[1][0].isdigit()


def test_one_name_for_the_process_count():
    for command in ("worker", "up", "supervisor-config", "systemd-config"):
        assert "--workers" in farm_cli(command, "--help").stdout, command
    assert "--processes" in farm_cli("worker", "--help").stdout  # the old name still works there


def test_show_prints_the_log_tail_and_logs_the_lines(farm: Farm, config, redis_url):
    job_id = farm.submit("demo", {"duration": 0, "stages": 4}, name="tailed")
    run_burst(config, redis_url)
    tail = farm.log_tail(job_id, 200)
    assert "stage 4/4: encode" in tail
    out = farm_cli("show", job_id[:8])
    assert out.returncode == 0, out.stderr
    assert "log " in out.stdout and "  stage 4/4: encode" in out.stdout
    assert farm_cli("show", job_id, "--lines", "0").stdout.count("stage 4/4") == 0
    shown = json.loads(farm_cli("show", job_id, "--json", "-n", "2").stdout)
    assert shown["id"] == job_id and shown["log"] == tail[-2:]
    out = farm_cli("logs", job_id[:8])
    assert out.returncode == 0 and out.stdout.splitlines() == tail[-50:]
    assert farm_cli("logs", job_id, "-n", "1").stdout.splitlines() == tail[-1:]


def test_logs_follow_prints_every_line_once_until_the_job_ends(farm: Farm, procs):
    procs.worker("--workers", "1")
    job_id = farm.submit("demo", {"duration": 2.5, "stages": 25})
    follower = subprocess.run(
        [sys.executable, "-m", "farm", "logs", "-f", job_id[:10]], capture_output=True, text=True, timeout=60
    )
    assert follower.returncode == 0, follower.stderr
    assert farm.get(job_id).status is JobStatus.FINISHED
    assert follower.stdout.splitlines() == farm.log_tail(job_id, 200)  # in order, none twice, none missed
    assert follower.stderr.strip() == f"{job_id} finished"
    failing = farm.submit("demo", {"duration": 0.3, "fail_with": "invalid_input"})
    out = farm_cli("logs", "--follow", failing)
    assert out.returncode == 1 and "failed: invalid_input" in out.stderr


def test_new_lines_of_a_capped_tail():
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]  # below the cap: append-only
    assert new_lines(["a", "b", "c"], ["a", "b", "c"]) == []
    assert new_lines(["a", "b", "c"], ["c", "d", "e"]) == ["d", "e"]  # at the cap, shifted by two
    assert new_lines(["a", "b", "c"], ["x", "y", "z"]) == ["x", "y", "z"]  # more than a cap between reads


def test_workers_and_audit(farm: Farm, procs, connection):
    procs.worker("--workers", "1", "--name", "ops-test")
    wait_workers(connection, 1)
    out = farm_cli("workers")
    assert out.returncode == 0 and "ops-test" in out.stdout and "idle" in out.stdout
    listed = json.loads(farm_cli("workers", "--json").stdout)
    assert [w["name"] for w in listed["workers"] if w["alive"]] == ["ops-test"] and listed["pools"] == []
    assert farm_cli("pause", "low").returncode == 0
    out = farm_cli("audit")
    assert out.returncode == 0 and "pause" in out.stdout and "low" in out.stdout
    entries = json.loads(farm_cli("audit", "--json", "--limit", "1").stdout)
    assert [(e["action"], e["target"]) for e in entries] == [("pause", "low")]


def test_doctor_json(farm: Farm, tmp_path):
    out = farm_cli("doctor", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == report["exit_code"] == 1 and report["ok"] is False  # no workers here
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["redis"]["status"] == "ok" and checks["workers"]["status"] == "warn"
    assert "demo" in checks
    down = tmp_path / "down.toml"
    down.write_text('[redis]\nurl = "unix:///nonexistent/redis.sock"\n')
    out = farm_cli("--config", str(down), "doctor", "--json")
    assert out.returncode == 4 and json.loads(out.stdout)["checks"][0]["status"] == "fail"


@pytest.mark.parametrize("args", [("logs", "does-not-exist"), ("show", "nope/x"), ("logs", "-n", "0", "x")])
def test_new_commands_fail_in_one_line(farm: Farm, args):
    out = farm_cli(*args)
    assert out.returncode in (2, 3) and out.stderr.startswith("farm: error:") and out.stderr.count("\n") == 1


def completions(args: list[str], incomplete: str) -> list[str]:
    complete = ShellComplete(cli, {}, "farm", "_FARM_COMPLETE")
    return [item.value for item in complete.get_completions(args, incomplete)]


def test_completion_of_renderer_names_needs_no_redis(tmp_path, monkeypatch):
    down = tmp_path / "down.toml"
    down.write_text('[redis]\nurl = "unix:///nonexistent/redis.sock"\n')
    monkeypatch.setenv("FARM_CONFIG", str(down))
    assert {"demo", "manim", "ffmpeg", "http", "command"} <= set(completions(["submit"], ""))
    assert set(completions(["submit"], "de")) == {"demo", "demo-manim", "demo-ffmpeg", "demo-http"}
    assert "demo" in completions(["ls", "--renderer"], "d")
    started = time.monotonic()
    assert completions(["show"], "") == []  # Redis down: nothing, no error, at once
    assert time.monotonic() - started < 2


def test_completion_of_job_ids_from_redis(farm: Farm):
    first = farm.submit("demo", {"duration": 0}, job_id="complete-me-1")
    second = farm.submit("demo", {"duration": 0}, job_id="complete-me-2")
    farm.submit("demo", {"duration": 0}, job_id="other-job")
    assert completions(["show"], "complete-") == [second, first]  # newest first
    assert set(completions(["cancel"], "")) >= {first, second, "other-job"}
    assert completions(["logs", "-f"], "oth") == ["other-job"]
    assert completions(["download"], "zzz") == []


def test_completion_through_the_shell_protocol(farm: Farm):
    farm.submit("demo", {"duration": 0}, job_id="shell-side-1")
    env = {"_FARM_COMPLETE": "bash_complete", "COMP_WORDS": "farm submit dem", "COMP_CWORD": "2"}
    out = farm_cli(env=env)
    assert out.returncode == 0 and "plain,demo" in out.stdout.splitlines()
    env = {"_FARM_COMPLETE": "bash_complete", "COMP_WORDS": "farm retry shell-", "COMP_CWORD": "2"}
    assert farm_cli(env=env).stdout.splitlines() == ["plain,shell-side-1"]
    script = farm_cli(env={"_FARM_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "complete -o nosort -F" in script.stdout


def test_completion_waits_for_nothing_when_redis_hangs(tmp_path, monkeypatch):
    """A Redis address that accepts but never answers (a frozen box): completion gives up fast."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        cfg = tmp_path / "silent.toml"
        cfg.write_text(f'[redis]\nurl = "redis://127.0.0.1:{silent.getsockname()[1]}/0"\n')
        monkeypatch.setenv("FARM_CONFIG", str(cfg))
        started = time.monotonic()
        assert completions(["show"], "") == []
        assert time.monotonic() - started < 2
