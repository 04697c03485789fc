"""The `farm` command line against a real Redis: output, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from farm import Farm, JobStatus
from tests.util import run_burst


def farm_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farm", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def test_submit_ls_show_stats(farm: Farm, config, redis_url):
    out = farm_cli(
        "submit",
        "demo",
        "--param",
        "duration=0",
        "--param",
        "stages=2",
        "--priority",
        "high",
        "--name",
        "cli-job",
    )
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    info = farm.get(job_id)
    assert info.params == {"duration": 0, "stages": 2} and info.priority.value == "high"

    out = farm_cli("ls")
    assert out.returncode == 0 and job_id[:12] in out.stdout and "cli-job" in out.stdout
    out = farm_cli("ls", "--json", "--status", "queued")
    assert [j["id"] for j in json.loads(out.stdout)] == [job_id]
    out = farm_cli("show", job_id)
    assert out.returncode == 0 and "renderer    demo" in out.stdout and "position    1" in out.stdout
    assert json.loads(farm_cli("show", job_id, "--json").stdout)["id"] == job_id
    out = farm_cli("stats", "--json")
    assert json.loads(out.stdout)["counts"]["queued"]["high"] == 1
    assert "queued" in farm_cli("stats").stdout


def test_submit_params_json_and_file(farm: Farm, tmp_path):
    params = tmp_path / "p.json"
    params.write_text('{"duration": 0.5, "stages": 5}')
    job_id = farm_cli("submit", "demo", "--params", f"@{params}").stdout.strip()
    assert farm.get(job_id).params == {"duration": 0.5, "stages": 5}
    job_id = farm_cli("submit", "demo", "--params", '{"stages": 7}', "-p", "duration=1").stdout.strip()
    assert farm.get(job_id).params == {"stages": 7, "duration": 1}


def test_submit_wait_shows_progress_and_exit_code(farm: Farm, procs):
    procs.worker("--processes", "1")
    out = farm_cli("submit", "demo", "-p", "duration=0.6", "-p", "stages=3", "--wait")
    assert out.returncode == 0, out.stderr
    assert "[" in out.stderr and "100.0%" in out.stderr and "finished" in out.stderr
    out = farm_cli("submit", "demo", "-p", "duration=0", "-p", "fail_with=invalid_input", "--wait")
    assert out.returncode == 1 and "failed: invalid_input" in out.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("submit", "nope"), 2, "unknown renderer 'nope'"),
        (("submit", "demo", "-p", "duration=soon"), 2, "duration"),
        (("submit", "demo", "-p", "noequals"), 2, "KEY=VALUE"),
        (("submit", "demo", "--params", "{bad json"), 2, "not valid JSON"),
        (("show", "does-not-exist"), 3, "no job 'does-not-exist'"),
        (("cancel", "does-not-exist"), 3, "no job"),
        (("show", "bad/id"), 2, "not a valid job id"),
        (("caps", "--total", "-3"), 2, "between 0"),
        (("caps", "--set", "manim"), 2, "NAME=N"),
    ],
)
def test_errors_are_one_line_with_exit_codes(farm: Farm, args, code, message):
    out = farm_cli(*args)
    assert out.returncode == code, (out.stdout, out.stderr)
    assert out.stderr.startswith("farm: error:") and message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_usage_error_is_exit_2():
    out = farm_cli("submit")
    assert out.returncode == 2


def test_cancel_retry_caps_pause(farm: Farm, config, redis_url):
    job_id = farm.submit("demo", {"duration": 0})
    out = farm_cli("cancel", job_id)
    assert out.returncode == 0 and out.stdout.strip() == f"{job_id} canceled"
    out = farm_cli("cancel", job_id)
    assert out.returncode == 2 and "already canceled" in out.stderr
    out = farm_cli("retry", job_id)
    assert out.stdout.strip() == f"{job_id} queued"
    run_burst(config, redis_url)
    assert farm.get(job_id).status is JobStatus.FINISHED

    out = farm_cli("caps", "--total", "7", "--set", "manim=2", "--set", "ffmpeg=1")
    assert out.returncode == 0 and "total       7" in out.stdout
    caps = farm.caps()
    assert caps.total == 7 and caps.renderers == {"manim": 2, "ffmpeg": 1}
    farm_cli("caps", "--set", "ffmpeg=")
    assert farm.caps().renderers == {"manim": 2}
    assert farm_cli("pause", "low").returncode == 0
    assert [p.value for p in farm.paused()] == ["low"]
    farm_cli("resume", "low")
    assert farm.paused() == []
    actions = [e.action for e in farm.audit_log()]
    assert actions[:4] == ["resume", "pause", "caps", "caps"]


def test_supervisor_config_mentions_every_program(config):
    out = farm_cli("supervisor-config", "--workers", "3")
    assert out.returncode == 0
    assert "[program:farm-scheduler]" in out.stdout and "worker --workers 3" in out.stdout
