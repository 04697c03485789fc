"""command renderer: template validation, var checks and filling (pure), then real runs of python."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from farm.models import ErrorKind
from farm.render import Registry, RendererEnv, RenderError, SimpleContext
from renderers.command import CommandRenderer, CommandSettings, TemplateSettings, check_vars, fill
from tests.renderers.conftest import ContextFactory

PY = sys.executable

# A tiny "tool": writes its arguments (one per line) into the output file, reports progress.
WRITER = (
    "import sys, pathlib\n"
    "out, *rest = sys.argv[1:]\n"
    "for p in (25, 50, 75): print(f'progress {p}%', flush=True)\n"
    "pathlib.Path(out).write_text('\\n'.join(rest))\n"
)


def template(**values: Any) -> TemplateSettings:
    return TemplateSettings.model_validate(values)


TITLE = template(
    argv=[
        "/usr/bin/tool",
        "--title={title}",
        "{src}",
        "-n",
        "{count}",
        "--q={quality}",
        "-o",
        "{out}",
        "{ratio}",
    ],
    vars={
        "title": "str",
        "src": "path",
        "count": "int",
        "quality": ["low", "high"],
        "out": "output",
        "ratio": "float",
    },
)
GOOD = {"title": "Intro", "src": "clips/a.mp4", "count": 3, "quality": "high", "out": "a.mp4", "ratio": 1.5}


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"argv": [], "vars": {}}, "at least 1"),
        ({"argv": ["{exe}", "x"], "vars": {"exe": "str"}}, "argv\\[0\\]"),
        ({"argv": ["/bin/x{v}", "a"], "vars": {"v": "str"}}, "argv\\[0\\]"),
        ({"argv": ["tool", "{a}"], "vars": {}}, "without a declared var: a"),
        ({"argv": ["tool"], "vars": {"a": "str"}}, "never used"),
        ({"argv": ["tool", "{a}"], "vars": {"a": []}}, "choice list"),
        ({"argv": ["tool", "{a}"], "vars": {"a": "bytes"}}, "Input should be"),
        ({"argv": ["tool"], "progress": "no group"}, "group"),
        ({"argv": ["tool"], "progress": "(unclosed"}, "bad progress regex"),
        ({"argv": ["tool"], "shell": True}, "Extra inputs"),
    ],
)
def test_templates_are_validated_at_config_load(values: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        TemplateSettings.model_validate(values)


def test_check_vars_normalises_good_values() -> None:
    assert check_vars(TITLE, {**GOOD, "count": "12", "ratio": 2}) == {**GOOD, "count": 12, "ratio": 2.0}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"extra": "x"}, "unknown vars: 'extra'"),
        ({"bad\nname": "x"}, r"unknown vars: 'bad\\nname'"),  # one line, escaped
        ({"title": None}, "must be a string"),
        ({"title": "-rf"}, "must not start with '-'"),
        ({"title": "--output=/etc/passwd"}, "must not start with '-'"),
        ({"title": "a\x00b"}, "NUL"),
        ({"title": "x" * 5000}, "longer than"),
        ({"count": "3; rm -rf /"}, "integer"),
        ({"count": True}, "booleans"),
        ({"count": 1.5}, "integer"),
        ({"ratio": "nan"}, "finite"),
        ({"ratio": float("inf")}, "finite"),
        ({"ratio": "fast"}, "finite"),
        ({"quality": "ultra"}, "one of low, high"),
        ({"src": "../../etc/passwd"}, "escapes"),
        ({"src": "clips/\x00"}, "NUL"),
        ({"out": "../a.mp4"}, "plain file name"),
        ({"out": "/tmp/a.mp4"}, "plain file name"),
        ({"out": "-a.mp4"}, "must not start with '-'"),
    ],
)
def test_check_vars_refuses_hostile_values(change: dict[str, Any], why: str) -> None:
    with pytest.raises(RenderError, match=why) as caught:
        check_vars(TITLE, {**GOOD, **change})
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_missing_vars_are_refused() -> None:
    with pytest.raises(RenderError, match="missing vars: count, ratio"):
        check_vars(TITLE, {k: v for k, v in GOOD.items() if k not in ("count", "ratio")})


def test_fill_is_exact_single_pass_substitution() -> None:
    argv = ["tool", "{a}", "pre-{a}-{b}-post", "{}", "{{a}}", "{not_a_var"]
    filled = fill(argv, {"a": "{b}", "b": "$(id); `x` | y"})
    assert filled == ["tool", "{b}", "pre-{b}-$(id); `x` | y-post", "{}", "{{b}}", "{not_a_var"]
    assert fill(["{a}", "{a}"], {"a": "EVIL"})[0] == "{a}"  # argv[0] is never substituted


def test_validate_needs_a_configured_template_and_good_vars() -> None:
    env = RendererEnv(Path("/d"), Path("/o"), (Path("/srv/in"),), Path("/l"))
    renderer = CommandRenderer(CommandSettings(templates={"t": TITLE}), env)
    assert renderer.validate({"template": "t", "vars": GOOD}).template == "t"
    for bad in (
        {"template": "other", "vars": GOOD},
        {"template": "t", "vars": {**GOOD, "src": "/etc/passwd"}},
        {"template": "t", "vars": {**GOOD, "title": "-x"}},
    ):
        with pytest.raises(RenderError) as caught:
            renderer.validate(bad)
        assert caught.value.kind is ErrorKind.INVALID_INPUT
    for bad in ({"template": "t", "vars": GOOD, "argv": ["sh"]}, {"template": "t", "vars": {"count": [1]}}):
        with pytest.raises(ValidationError):
            renderer.validate(bad)


def test_registry_reads_toml_shaped_config() -> None:
    config = {
        "templates": {
            "blender": {
                "argv": ["blender", "-b", "{file}", "-o", "{out}"],
                "vars": {"file": "path", "out": "output"},
                "timeout": 600,
                "exit_codes": {"2": "invalid_input"},  # TOML keys are strings
            }
        }
    }
    renderer = Registry(settings={"command": config}).get("command")
    assert isinstance(renderer, CommandRenderer)
    assert renderer.settings.templates["blender"].exit_codes == {2: ErrorKind.INVALID_INPUT}


# --- real runs ---------------------------------------------------------------------------------


@pytest.fixture
def renderer(env: RendererEnv, inputs: Path) -> CommandRenderer:
    (inputs / "tool.py").write_text(WRITER)
    (inputs / "data.txt").write_text("data")
    templates = {
        "write": {
            "argv": [PY, "{script}", "{out}", "title={title}", "{title}", "{n}", "{mode}"],
            "vars": {"script": "path", "out": "output", "title": "str", "n": "int", "mode": ["fast", "slow"]},
            "progress": r"progress (\d+)%",
        },
        # the tools below are inline Python, so they need allow_shell; job data only ever
        # reaches them as an argument
        "fail": {
            "argv": [PY, "-c", "import sys; print('it broke: ' + sys.argv[1]); sys.exit(3)", "{why}"],
            "vars": {"why": "str"},
            "allow_shell": True,
        },
        "fail_mapped": {
            "argv": [PY, "-c", "import sys; print('bad scene'); sys.exit(2)"],
            "exit_codes": {"2": "invalid_input"},
            "allow_shell": True,
        },
        "sleep": {"argv": [PY, "-c", "import time; time.sleep(30)"], "timeout": 0.5, "allow_shell": True},
        "lazy": {"argv": [PY, "-c", "pass", "{out}"], "vars": {"out": "output"}, "allow_shell": True},
        "env": {
            "argv": [PY, "-c", "import os; print(os.environ['FARM_TPL'])"],
            "env": {"FARM_TPL": "from config"},
            "allow_shell": True,
        },
    }
    return CommandRenderer(CommandSettings.model_validate({"templates": templates}), env)


def test_real_run_passes_hostile_strings_literally(
    renderer: CommandRenderer, make_ctx: ContextFactory, staging: Path, inputs: Path
) -> None:
    title = "x; touch pwned && echo $(id) `whoami` | tee /tmp/farm-pwned > out * ?"
    ctx = make_ctx()
    params = renderer.validate(
        {
            "template": "write",
            "vars": {"script": "tool.py", "out": "o.txt", "title": title, "n": 3, "mode": "slow"},
        }
    )
    result = renderer.render(params, ctx)
    assert result["outputs"] == ["o.txt"] and result["returncode"] == 0
    assert (staging / "o.txt").read_text().splitlines() == [f"title={title}", title, "3", "slow"]
    assert not (staging / "pwned").exists() and not Path("/tmp/farm-pwned").exists()
    assert [p for p, _ in ctx.progress_calls] == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert "progress 50%" in ctx.lines


def test_nonzero_exit_is_unknown_with_the_tail(renderer: CommandRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        renderer.render(renderer.validate({"template": "fail", "vars": {"why": "disk"}}), make_ctx())
    assert caught.value.kind is ErrorKind.UNKNOWN
    assert "exited with code 3" in caught.value.message and "it broke: disk" in caught.value.message


def test_exit_code_mapping_from_the_template(renderer: CommandRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        renderer.render(renderer.validate({"template": "fail_mapped"}), make_ctx())
    assert caught.value.kind is ErrorKind.INVALID_INPUT and "bad scene" in caught.value.message


def test_template_timeout(renderer: CommandRenderer, make_ctx: ContextFactory) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        renderer.render(renderer.validate({"template": "sleep"}), make_ctx())
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2


def test_declared_output_must_exist(renderer: CommandRenderer, make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError, match="did not create x.bin"):
        renderer.render(renderer.validate({"template": "lazy", "vars": {"out": "x.bin"}}), make_ctx())


def test_template_env(renderer: CommandRenderer, make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    renderer.render(renderer.validate({"template": "env"}), ctx)
    assert ctx.lines == ["from config"]


def test_path_vars_are_confined_at_render_time(
    renderer: CommandRenderer, make_ctx: ContextFactory, inputs: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.py").write_text(WRITER)
    (inputs / "sneaky.py").symlink_to(tmp_path / "outside.py")
    base = {"out": "o.txt", "title": "t", "n": 1, "mode": "fast"}
    with pytest.raises(RenderError) as caught:
        renderer.render(
            renderer.validate({"template": "write", "vars": {**base, "script": "sneaky.py"}}), make_ctx()
        )
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    with pytest.raises(RenderError) as caught:
        renderer.render(
            renderer.validate({"template": "write", "vars": {**base, "script": "gone.py"}}), make_ctx()
        )
    assert caught.value.kind is ErrorKind.NOT_FOUND


def test_output_size_is_limited(env: RendererEnv, staging: Path) -> None:
    dd = {"argv": ["dd", "if=/dev/zero", "of={out}", "bs=64k", "count=64"], "vars": {"out": "output"}}
    renderer = CommandRenderer(CommandSettings.model_validate({"templates": {"dd": dd}}), env)
    ctx = SimpleContext(job_id="dd", staging_dir=staging, env=replace(env, max_output_bytes=100_000))
    with pytest.raises(RenderError) as caught:
        renderer.render(renderer.validate({"template": "dd", "vars": {"out": "zeros.bin"}}), ctx)
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "dd exceeded limits.max_output_bytes (100000 bytes)" in caught.value.message
    assert (staging / "zeros.bin").stat().st_size <= 100_000


# --- negative numbers standing alone (`head {n}` with n = -1 would be the option -1) ----------

SIGNS = template(
    argv=["/usr/bin/tool", "{n}", "--offset={off}", "-x", "{x}", "{when}"],
    vars={"n": "int", "off": "int", "x": {"type": "float", "signed": True}, "when": "float"},
)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"n": -1}, "var 'n' is negative"),
        ({"n": "-1"}, "var 'n' is negative"),
        ({"when": -0.5}, "var 'when' is negative"),
        ({"when": "-1e3"}, "var 'when' is negative"),
        ({"when": -0.0}, "var 'when' is negative"),
        ({"n": 10**18}, "out of range"),
        ({"n": -(10**5000)}, "out of range"),  # its decimal text alone would raise ValueError
        ({"when": 10**400}, "finite number"),  # float() of it would raise OverflowError
        ({"when": "1" * 5000}, "finite number"),
    ],
)
def test_negative_numbers_alone_need_signed(values: dict[str, Any], why: str) -> None:
    with pytest.raises(RenderError, match=why) as caught:
        check_vars(SIGNS, {"n": 1, "off": 0, "x": 0.0, "when": 1.0, **values})
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert "\n" not in caught.value.message and len(caught.value.message) < 300


def test_negative_numbers_pass_inside_an_argument_or_when_signed() -> None:
    checked = check_vars(SIGNS, {"n": 3, "off": -5, "x": "-1.5", "when": 2})
    assert checked == {"n": 3, "off": -5, "x": -1.5, "when": 2.0}
    assert fill(SIGNS.argv, {k: str(v) for k, v in checked.items()})[1:4] == ["3", "--offset=-5", "-x"]


def test_var_declarations_toml_shapes() -> None:
    loaded = template(
        argv=["tool", "{a}", "{b}", "{c}", "{d}"],
        vars={
            "a": "int",
            "b": {"type": "int", "signed": True},
            "c": ["x", "y"],
            "d": {"type": "choice", "choices": ["z"]},
        },
    )
    assert [spec.type for spec in loaded.vars.values()] == ["int", "int", "choice", "choice"]
    assert loaded.vars["b"].signed and not loaded.vars["a"].signed
    assert loaded.standing_alone() == {"a", "b", "c", "d"}
    for bad, why in (
        ({"type": "str", "signed": True}, "signed applies to int and float"),
        ({"type": "int", "sign": True}, "Extra inputs"),
        ({"type": "int", "choices": ["a"]}, "choices go with"),
        ({"type": "choice"}, "choice list"),
    ):
        with pytest.raises(ValidationError, match=why):
            template(argv=["tool", "{a}"], vars={"a": bad})


def test_a_negative_var_never_reaches_head_as_an_option(
    env: RendererEnv, inputs: Path, make_ctx: ContextFactory, staging: Path
) -> None:
    (inputs / "lines.txt").write_text("one\ntwo\nthree\n")
    templates = {
        "head": {"argv": ["head", "{n}", "{src}"], "vars": {"n": "int", "src": "path"}},
        "lines": {
            "argv": ["head", "-n", "{n}", "{src}"],
            "vars": {"n": {"type": "int", "signed": True}, "src": "path"},
        },
    }
    renderer = CommandRenderer(CommandSettings.model_validate({"templates": templates}), env)
    with pytest.raises(RenderError, match="var 'n' is negative"):  # `head -1 lines.txt`
        renderer.validate({"template": "head", "vars": {"n": -1, "src": "lines.txt"}})
    ctx = make_ctx()  # declared signed: GNU head -n -1 means "all but the last line"
    renderer.render(renderer.validate({"template": "lines", "vars": {"n": -1, "src": "lines.txt"}}), ctx)
    assert ctx.lines == ["one", "two"]
