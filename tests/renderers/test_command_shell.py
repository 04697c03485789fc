"""command renderer: templates that hand job data to a shell or to inline interpreter code need
``allow_shell = true``, and doctor names them (``renderers.command_shell``). Pure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from farm.render import Health, Registry
from renderers.command import CommandRenderer, TemplateSettings
from renderers.command_shell import shell_reason


def template(**values: object) -> TemplateSettings:
    return TemplateSettings.model_validate(values)


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "echo {x}"],
        ["/bin/sh", "-c", "echo {x}"],
        ["bash", "script.sh", "{x}"],  # a shell script still parses its arguments in a shell
        ["/usr/bin/zsh", "-c", "print {x}"],
        ["busybox", "sh", "-c", "echo {x}"],
        ["fish", "-c", "echo {x}"],
        ["tcsh", "-c", "echo {x}"],
        ["ssh", "render-box", "convert {x}"],
        ["env", "sh", "-c", "echo {x}"],
        ["/usr/bin/env", "-i", "PATH=/bin", "bash", "-c", "echo {x}"],
        ["env", "-S", "sh -c 'echo {x}'"],
        ["nice", "-n", "5", "sh", "-c", "echo {x}"],
        ["timeout", "10", "/usr/bin/python3", "-c", "print('{x}')"],
        ["xargs", "sh", "-c", "echo {x}"],
        ["find", "/srv", "-name", "{x}", "-exec", "sh", "-c", "cat $0", "{}", ";"],
        ["python3", "-c", "print('{x}')"],
        ["/usr/local/bin/python3.11", "-Ic", "print('{x}')"],
        ["python", "-cprint('{x}')"],
        ["pypy3", "-c", "{x}"],
        ["perl", "-e", "print '{x}'"],
        ["perl", "-ne", "print if /{x}/"],
        ["ruby", "-e", "puts '{x}'"],
        ["node", "-e", "console.log('{x}')"],
        ["node", "--eval=console.log('{x}')"],
        ["php", "-r", "echo '{x}';"],
        ["Rscript", "-e", "print('{x}')"],
        ["awk", '{print $1, "{x}"}', "file.txt"],
        ["gawk", "-v", "x={x}", "BEGIN {print x}"],
        ["sed", "-e", "s/a/{x}/", "file.txt"],
    ],
)
def test_shell_templates_need_allow_shell(argv: list[str]) -> None:
    with pytest.raises(ValidationError, match="allow_shell = true"):
        template(argv=argv, vars={"x": "str"})
    assert template(argv=argv, vars={"x": "str"}, allow_shell=True).shell_warning()


@pytest.mark.parametrize(
    "argv",
    [
        ["python3", "render.py", "{x}"],
        ["/usr/bin/python3", "-u", "-m", "mytool", "{x}"],
        ["perl", "script.pl", "{x}"],
        ["awk", "-f", "prog.awk", "{x}"],
        ["node", "app.js", "{x}"],
        ["env", "OMP_NUM_THREADS=4", "blender", "-b", "{x}"],
        ["ffmpeg", "-i", "{x}", "out.mp4"],
        ["nice", "-n", "10", "convert", "{x}", "out.png"],
        ["/opt/shell-tools/render", "{x}"],  # "shell" in a folder name is not a shell
    ],
)
def test_ordinary_templates_load_without_a_word(argv: list[str]) -> None:
    assert template(argv=argv, vars={"x": "str"}).shell_warning() is None


def test_doctor_warns_about_allowed_shell_templates() -> None:
    templates = {
        "echo": {"argv": ["sh", "-c", 'echo "$1"', "echo", "{x}"], "vars": {"x": "str"}, "allow_shell": True},
        "copy": {"argv": ["cp", "{src}", "{out}"], "vars": {"src": "path", "out": "output"}},
    }
    renderer = Registry(settings={"command": {"templates": templates}}).get("command")
    health = renderer.doctor()
    assert health.ok
    assert health.detail == "2 templates; template 'echo' runs sh: job data reaches a shell or inline code"
    assert CommandRenderer().doctor() == Health(True, "no templates configured")


def test_shell_reason_names_what_runs() -> None:
    assert shell_reason(["/bin/sh", "-c", "x"]) == "runs sh"
    assert shell_reason(["python3", "-c", "x"]) == "runs python3 with inline code"
    assert shell_reason(["awk", "{print}"]) == "runs awk with an inline program"
    split = "runs env -S, which splits a string into a command line"
    assert shell_reason(["env", "-S", "tool {x}"]) == split
    assert shell_reason(["env", "--split-string=tool {x}"]) == split
    assert shell_reason(["cp", "{a}", "sh"]) is None  # only wrappers get their later words read
    assert shell_reason([]) is None
