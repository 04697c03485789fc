"""``farm systemd-config`` and ``deploy/systemd/``: units that parse (``systemd-analyze verify``
where it is installed) and keep supervisor's guarantees: Redis first and last, KillMode=mixed,
a stop timeout above the shutdown grace, a fixed working directory."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from farm.cli.redis_foreground import drain_limit
from farm.cli.systemd import render_units
from farm.config import FarmConfig, parse_config
from tests.util import write_toml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "systemd"
SERVICES = ("farm-redis.service", "farm-serve.service", "farm-scheduler.service", "farm-worker.service")


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def generate(tmp_path: Path, body: dict) -> dict[str, str]:
    config = tmp_path / "farm.toml"
    write_toml(config, body)
    out_dir = tmp_path / "units"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "farm",
            "--config",
            str(config),
            "systemd-config",
            "--workers",
            "3",
            "-o",
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return {p.name: p.read_text() for p in sorted(out_dir.iterdir())}


def test_deploy_examples_are_what_systemd_config_generates():
    units = render_units(
        FarmConfig(),
        2,
        farm="/opt/farm/.venv/bin/farm --config /opt/farm/farm.toml",
        directory=Path("/opt/farm"),
        user="farm",
        note=" (example for /opt/farm; run it on your host)",
    )
    assert {p.name: p.read_text() for p in DEPLOY.iterdir()} == units


def test_units_parse_and_keep_the_guarantees(tmp_path: Path):
    body = {"paths": {"data_dir": str(tmp_path / "data")}, "worker": {"shutdown_grace": 40.0}}
    units = generate(tmp_path, body)
    assert set(units) == {*SERVICES, "farm.target"}
    target = parse(units["farm.target"])
    assert target["Unit"]["Wants"].split() == list(SERVICES)
    assert target["Install"]["WantedBy"] == "multi-user.target"
    config = parse_config(body)
    for name in SERVICES:
        unit = parse(units[name])
        service = unit["Service"]
        assert service["KillMode"] == "mixed" and service["WorkingDirectory"] == str(tmp_path.resolve())
        assert unit["Unit"]["PartOf"] == "farm.target"
        assert (
            service["ExecStart"].startswith("/")
            and f"--config {tmp_path / 'farm.toml'}" in service["ExecStart"]
        )
        if name != "farm-redis.service":  # started after Redis, so stopped (and drained) before it
            assert "farm-redis.service" in unit["Unit"]["After"].split()
    worker = parse(units["farm-worker.service"])["Service"]
    assert worker["ExecStart"].endswith("worker --workers 3")
    assert int(worker["TimeoutStopSec"]) > config.worker.shutdown_grace
    redis = parse(units["farm-redis.service"])["Service"]
    assert int(redis["TimeoutStopSec"]) > drain_limit(config)
    if shutil.which("systemd-analyze"):  # not a skip: the structure above is checked everywhere
        out = subprocess.run(
            ["systemd-analyze", "verify", *(str(tmp_path / "units" / n) for n in units)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stderr


def test_an_external_redis_gets_no_redis_unit(tmp_path: Path):
    units = generate(tmp_path, {"redis": {"url": "redis://render-host:6379/0"}})
    assert "farm-redis.service" not in units
    assert not any("farm-redis" in text for text in units.values())
