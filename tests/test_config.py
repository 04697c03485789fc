"""Config: SPEC defaults, the documented example, lookup order and one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from farm.config import FarmConfig, find_config_file, load_config, parse_config
from farm.errors import ConfigError
from farm.models import Priority

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def test_spec_defaults():
    c = FarmConfig()
    assert c.caps.total == 10 and c.caps.renderers == {"manim": 4}
    assert [(w.start, w.end, w.multiplier) for w in c.caps.windows] == [
        ("06:00", "09:00", 1.5),
        ("20:00", "23:00", 1.5),
    ]
    assert c.queues.job_types == {
        "doubt": Priority.HIGH,
        "topic_short": Priority.MEDIUM,
        "daily_ca": Priority.LOW,
    }
    assert c.retry.max_retries == 3 and c.retry.base_delay == 300 and c.retry.max_delay == 3600
    assert c.timeouts.default == 600
    assert (c.retention.finished, c.retention.failed, c.retention.canceled) == (86400, 604800, 604800)
    assert c.scheduler.sweep_interval == 15


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and name not in ("caps",):
            out |= _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def test_example_documents_every_key_with_its_default():
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    parsed = parse_config(data)
    defaults = FarmConfig()
    for section in (
        "redis",
        "queues",
        "caps",
        "retry",
        "timeouts",
        "retention",
        "scheduler",
        "worker",
        "limits",
        "alerts",
        "notify",
        "web",
        "cache",
    ):
        assert getattr(parsed, section) == getattr(defaults, section), section
    for key in _leaf_keys(FarmConfig):
        section, _, leaf = key.rpartition(".")
        needle = leaf if section else f"[{leaf}"
        assert needle in text, f"{key} is not documented in config.example.toml"


def test_bad_config_names_the_key(tmp_path: Path):
    bad = tmp_path / "farm.toml"
    bad.write_text("[caps]\ntotal = 'ten'\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    message = str(err.value)
    assert "caps.total" in message and "\n" not in message
    bad.write_text("[caps]\ntotl = 3\n")
    with pytest.raises(ConfigError, match="caps.totl: unknown key"):
        load_config(bad)
    bad.write_text("[caps\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    bad.write_text('[[caps.windows]]\nstart = "25:00"\nend = "09:00"\nmultiplier = 2\n')
    with pytest.raises(ConfigError, match="caps.windows.0.start"):
        load_config(bad)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FARM_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config_file() is None
    user = tmp_path / "xdg" / "farm" / "farm.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[caps]\ntotal = 1\n")
    assert load_config().caps.total == 1
    (tmp_path / "farm.toml").write_text("[caps]\ntotal = 2\n")
    assert load_config().caps.total == 2
    env = tmp_path / "env.toml"
    env.write_text("[caps]\ntotal = 3\n")
    monkeypatch.setenv("FARM_CONFIG", str(env))
    assert load_config().caps.total == 3
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[caps]\ntotal = 4\n")
    assert load_config(explicit).caps.total == 4
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_redis_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("FARM_REDIS_URL", raising=False)
    c = parse_config({"paths": {"data_dir": str(tmp_path)}})
    assert c.redis_url() == f"unix://{tmp_path}/redis.sock"
    c = parse_config({"redis": {"url": "redis://box:6379/0"}})
    assert c.redis_url() == "redis://box:6379/0"
    monkeypatch.setenv("FARM_REDIS_URL", "redis://other:6379/1")
    assert c.redis_url() == "redis://other:6379/1"


def test_example_renderer_sections_load():
    from farm.render import Registry

    config = parse_config(tomllib.loads(EXAMPLE.read_text()))
    Registry(config.renderers, config.plugins).check_settings()


def test_bad_renderer_setting_names_the_key():
    from farm.render import Registry, RegistryError

    with pytest.raises(RegistryError, match="renderers.manim.executabel"):
        Registry({"manim": {"executabel": "x"}}).check_settings()
