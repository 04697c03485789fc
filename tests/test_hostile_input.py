"""Hostile input from a submitter: only FarmErrors come back, nothing is written on a rejection,
the CLI answers in one line, terminals never receive raw control characters, and an explicit job
id never touches outputs that already exist."""

from __future__ import annotations

import math
import string
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from farm import Farm, FarmError, InvalidJobError, JobStatus
from tests.test_cli import farm_cli
from tests.test_submit import keyspace

PLUGINS = {"stamp": "tests.helpers:StampRenderer"}

odd_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6000), max_value=10**6000),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(odd_text, children, max_size=4)
    ),
    max_leaves=20,
)
options = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.one_of(st.sampled_from(["high", "medium", "low", "HIGH", "", " high"]), values),
        "job_type": st.one_of(st.sampled_from(["doubt", "doubt\n", "a b", "x" * 70]), values),
        "name": st.one_of(odd_text, values),
        "timeout": st.one_of(st.integers(-5, 10**9), values),
        "max_retries": st.one_of(st.integers(-5, 100), values),
        "job_id": st.one_of(st.sampled_from(["abc\n", "ok-id", "-x", "a" * 200, "a/b"]), odd_text),
    },
)
renderers = st.sampled_from(["demo", "manim", "ffmpeg", "http", "command", "nope", "", "demo\n"])


def deep(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(renderer=renderers, params=st.dictionaries(odd_text, values, max_size=5), opts=options)
def test_fuzzed_submits_raise_only_farm_errors_and_write_nothing(
    farm: Farm, connection: Redis, admin: Redis, renderer, params, opts
):
    before = keyspace(connection)
    try:
        job_id = farm.submit(renderer, params, **opts)
    except FarmError:
        assert keyspace(connection) == before
    else:
        assert farm.get(job_id).renderer == renderer
        admin.flushall()


@pytest.mark.parametrize(
    ("params", "opts"),
    [
        ({"duration": 10**400}, {}),
        ({"duration": 1e400}, {}),
        ({"duration": math.nan}, {}),
        ({"duration": 10**5000}, {}),
        ({"duration": deep(3000)}, {}),
        ({}, {"name": "lone \ud800 surrogate"}),
        ({}, {"name": "bell\x07"}),
        ({}, {"name": "csi\x9b2J"}),
        ({}, {"job_id": "abc\n"}),
        ({}, {"job_type": "doubt\n"}),
    ],
)
def test_each_reported_bad_input_is_an_invalid_job_error(farm: Farm, connection: Redis, params, opts):
    before = keyspace(connection)
    with pytest.raises(InvalidJobError):
        farm.submit("demo", params, **opts)
    assert keyspace(connection) == before


def test_a_deep_batch_is_refused_whole(farm: Farm, connection: Redis):
    before = keyspace(connection)
    with pytest.raises(InvalidJobError, match="request 1"):
        farm.submit_many([{"renderer": "demo"}, {"renderer": "demo", "params": {"d": deep(3000)}}])
    assert keyspace(connection) == before


cli_words = st.text(alphabet=string.printable + "é\u202e", max_size=12)


# A process per example (~1 s each): the parsing it reaches is fuzzed 300 times in-process above.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(
        st.one_of(
            st.sampled_from(["--param", "-p", "--params", "--priority", "--job-type", "--name", "--timeout"]),
            st.sampled_from(["--max-retries", "--job-id", "duration=1e400", "x=[[[[[[", "@/nonexistent"]),
            cli_words,
        ),
        max_size=6,
    )
)
def test_fuzzed_cli_submits_answer_in_one_line(farm: Farm, connection: Redis, admin: Redis, args):
    before = keyspace(connection)
    out = farm_cli("submit", "demo", *args)
    assert "Traceback" not in out.stderr
    if out.returncode != 0:
        assert out.returncode in (2, 3, 4), out.stderr
        assert out.stderr.startswith("farm: error:") and out.stderr.count("\n") == 1, out.stderr
        assert keyspace(connection) == before
    else:
        admin.flushall()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["submit", "demo", "--bogus"], "--bogus"),
        (["submit", "demo", "--priority", "urgent"], "--priority"),
        (["submit", "demo", "--timeout", "soon"], "--timeout"),
        (["ls", "--status", "sideways"], "--status"),
        (["caps", "--total", "many"], "--total"),
    ],
)
def test_cli_usage_errors_are_one_line_naming_the_option(args, option):
    out = farm_cli(*args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("farm: error:"), out.stderr
    assert option in out.stderr and "Usage:" not in out.stderr


def test_terminal_escapes_in_job_data_never_reach_the_terminal(farm: Farm, connection: Redis, burst):
    job_id = farm.submit("demo", {"duration": 0, "fail_with": "invalid_input"}, name="ok")
    burst()
    evil = "\x1b]0;pwned\x07\x1b[2J\x9b31m"
    connection.hset(f"rq:job:{job_id}", mapping={"farm_name": evil, "farm_error": "boom " + evil})
    for args in (["ls"], ["show", job_id], ["ls", "--json"], ["show", job_id, "--json"]):
        out = farm_cli(*args)
        assert out.returncode == 0, out.stderr
        assert not any(ch in out.stdout for ch in "\x1b\x07\x9b"), (args, out.stdout)
    assert "\\x1b" in farm_cli("show", job_id).stdout


def test_an_explicit_job_id_never_touches_existing_outputs(
    make_config, connection: Redis, redis_url: str, burst
):
    config = make_config(plugins=PLUGINS)
    farm = Farm(connection, config, url=redis_url)
    old = config.output_dir / "reused-id"
    old.mkdir(parents=True)
    (old / "keep.txt").write_text("an expired job's render\n")
    farm.submit("stamp", {"seconds": 0}, job_id="reused-id")
    from tests.util import run_burst

    run_burst(config, redis_url)
    info = farm.get("reused-id")
    assert info.status is JobStatus.FINISHED
    assert (old / "keep.txt").read_text() == "an expired job's render\n"
    assert not (old / "stamp.txt").exists()
    published = info.result["output_dir"]
    assert published != str(old) and (config.output_dir / published).joinpath("stamp.txt").exists()


def test_cli_unexpected_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "farm.toml"
    bad.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\nconnect_timeout = 0.2\n')
    out = subprocess.run(
        [sys.executable, "-m", "farm", "--config", str(bad), "ls"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 4 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_results_stored_in_redis_are_bounded(make_config, connection: Redis, redis_url: str):
    from tests.util import run_burst

    config = make_config(
        plugins={"big": "tests.helpers:BigResultRenderer"}, limits={"max_result_bytes": 10_000}
    )
    farm = Farm(connection, config, url=redis_url)
    small = farm.submit("big", {"size": 100})
    huge = farm.submit("big", {"size": 5_000_000}, max_retries=0)
    run_burst(config, redis_url)
    assert farm.get(small).status is JobStatus.FINISHED
    info = farm.get(huge)
    assert info.status is JobStatus.FAILED and "max_result_bytes" in (info.error or "")
    assert len(connection.hget(f"rq:job:{huge}", "farm_result") or b"") < 10_000
