"""The UI's pure parts, without Redis or a running app: params parsing, formatting, filters, banners."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta

import pytest

from app.clock import FixedClock
from app.fit import fit_line
from app.format import bar, duration, sparkline
from app.link import STATUS_CYCLE, Link, LinkState, next_status
from app.logs import logs_to_file
from app.params import parse_params
from app.screens.caps import parse_cap
from app.screens.enqueue import type_name
from app.widgets.alerts_banner import banner_lines
from app.widgets.job_table import matches, note
from app.widgets.stats_bar import running_parts
from farm.errors import InvalidJobError
from farm.models import JobStatus
from tests.tui import data


def test_params_as_json_key_value_or_both():
    assert parse_params("") == {}
    assert parse_params('{"duration": 3, "stages": 2}') == {"duration": 3, "stages": 2}
    assert parse_params("duration=3 quality=low flag=true") == {"duration": 3, "quality": "low", "flag": True}
    assert parse_params('{"duration": 3} duration=4 scene="My Scene"') == {"duration": 4, "scene": "My Scene"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"duration": ', "params JSON: Expecting value"),
        ("[1, 2]", "expected key=value"),
        ("duration", "expected key=value, got 'duration'"),
        ("=3", "expected key=value"),
        ("scene='unclosed", "params: No closing quotation"),
    ],
)
def test_bad_params_say_why(text, error):
    with pytest.raises(InvalidJobError, match=error.replace("[", r"\[")):
        parse_params(text)


def test_durations_bars_and_sparklines():
    assert [duration(s) for s in (None, 0, 59.9, 61, 3599, 3661)] == [
        "-",
        "0s",
        "59s",
        "1m01s",
        "59m59s",
        "1h01m",
    ]
    assert bar(62).plain == "██████░░░░  62%"
    assert bar(140).plain == "██████████ 100%"
    assert sparkline((0, 0)) == "▁▁"
    assert sparkline((0, 4, 8)) == "▁▅█"


def test_status_filter_cycles_back_to_all():
    seen = [None]
    for _ in STATUS_CYCLE:
        seen.append(next_status(seen[-1]))
    assert seen[:4] == [None, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED]
    assert seen[-1] is None and set(seen) == set(STATUS_CYCLE)


def test_text_filter_matches_every_word_anywhere():
    failed = next(r for r in data.ROWS if r.name == "outro-1")
    assert matches(failed, "outro invalid", None)
    assert matches(failed, "OUTRO", JobStatus.FAILED)
    assert not matches(failed, "outro", JobStatus.QUEUED)
    assert not matches(failed, "outro manim", None)


def test_notes_say_when_or_why():
    rows = {r.name: r for r in data.ROWS}
    assert note(rows["doubt-417"], data.AT).plain == "eta 27s · animate 31/50"
    assert note(rows["doubt-418"], data.AT).plain == "#1 all 4 workers busy · in ~27s"
    assert note(rows["lesson-3"], data.AT).plain == "retry at 21:34:00"
    assert note(rows["thumbs-30"], data.AT).plain == "timeout: timed out after 600s"
    assert note(rows["doubt-417"], data.AT + timedelta(minutes=5)).plain.startswith("overdue")


def test_running_line_names_the_window_and_the_real_limit():
    text = fit_line(running_parts(data.STATS), 500).plain
    assert "running 4/15" in text and "manim 2/6" in text and "demo 2/∞" in text
    assert "window 20:00-23:00 x1.5 in force (base caps: total 10, manim 4)" in text
    assert "only 4 worker processes: the real limit" in text


def test_banner_says_disconnected_with_the_last_good_time():
    clock = FixedClock(data.AT)
    snapshot = data.busy_snapshot()
    assert [t.plain for t in banner_lines(snapshot, Link(LinkState.UP, data.AT), clock)] == [
        "alert: queue depth 57 > 50"
    ]
    down = Link(LinkState.DOWN, last_good=data.AT - timedelta(seconds=5), error="Redis unavailable: refused")
    first = banner_lines(snapshot, down, clock)[0].plain
    assert first == "● disconnected — retrying  ·  last good refresh 21:29:55  ·  Redis unavailable: refused"
    assert "no good refresh yet" in banner_lines(None, Link(LinkState.DOWN), clock)[0].plain


def test_cap_fields():
    assert parse_cap(" 7 ", blank_ok=False) == 7
    assert parse_cap("", blank_ok=True) is None
    with pytest.raises(ValueError, match="required"):
        parse_cap("", blank_ok=False)
    with pytest.raises(ValueError, match="must be 0 to 10000"):
        parse_cap("10001", blank_ok=True)


def test_logs_go_to_a_file_while_the_ui_runs(tmp_path):
    root = logging.getLogger()
    terminal = logging.StreamHandler(sys.stderr)
    root.addHandler(terminal)
    try:
        with logs_to_file(tmp_path / "logs" / "tui.log"):
            assert terminal not in root.handlers
            logging.getLogger("farm.demo").warning("Redis unavailable")
        assert terminal in root.handlers
        assert "farm.demo WARNING Redis unavailable" in (tmp_path / "logs" / "tui.log").read_text()
    finally:
        root.removeHandler(terminal)


def test_param_types_read_like_what_to_type():
    from typing import Annotated, Any, Literal

    from pydantic import Strict

    assert type_name(float) == "float"
    assert type_name(Literal["low", "high"] | None) == "'low' | 'high' | None"
    assert type_name(dict[str, Annotated[int, Strict()] | str]) == "dict[str, int | str]"
    assert type_name(tuple[str, ...]) == "tuple[str, ...]"
    assert type_name(dict[str, Any]) == "dict[str, Any]"
    assert type_name(JobStatus).startswith("'queued' | 'scheduled'")
