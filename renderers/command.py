"""The command renderer: runs argv templates defined only in config, filled from validated job vars.

Job data names a template and gives its vars; it never supplies the executable or any argument the
template does not place. Placeholders are whole ``{name}`` tokens inside argv elements, replaced
in one pass (a value containing ``{other}`` stays literal). No shell, ever: a template whose argv
runs one (or inline interpreter code, see ``renderers.command_shell``) loads only with
``allow_shell = true``, and ``doctor`` then warns about it. ``fill`` and ``check_vars`` are pure
and tested without processes.

A ``path`` var names a regular file below an input root. The command gets it as
``/proc/self/fd/N``: the file opened (without following any symlink) when the render started,
inherited by the command, so a symlink swapped in afterwards cannot redirect it. The command
therefore sees neither the file's name nor its folder.

For the render cache, ``cache_inputs`` names the files of the ``path`` vars, and ``tool_version``
is a digest of every template's definition and the identity (path, size, mtime) of the executable
each one runs: ``tool_version`` cannot see which template a job uses, so editing one template
changes the key of all.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from farm.models import ErrorKind
from farm.render import Health, Params, RenderContext, Renderer, RendererEnv, RenderError, Settings

from .command_shell import shell_reason
from .paths import (
    check_relative_or_within,
    fd_path,
    is_text,
    open_confined,
    plain_name,
    resolve_confined,
    show,
)
from .proc import run
from .versions import digest, identity

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INT = re.compile(r"^[+-]?\d{1,18}$")
MAX_INT = 10**18  # ints beyond this are refused (and their text would be too long to matter)
MAX_STR_CHARS = 4096
MAX_NUMBER_CHARS = 100
VarValue = str | int | float


class VarSpec(BaseModel):
    """One var's declaration. In TOML: ``"int"`` (the shorthand), ``["low", "high"]`` (choices),
    or a table such as ``{ type = "int", signed = true }``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["str", "int", "float", "path", "output", "choice"]
    choices: tuple[str, ...] = ()
    # int/float: may a negative value fill a placeholder that is a whole argument on its own
    # (``head -n {n}``)? There "-1" would read as an option, so by default it is refused.
    signed: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        if isinstance(value, list):
            return {"type": "choice", "choices": value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VarSpec:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice list needs at least one string")
        if self.type != "choice" and self.choices:
            raise ValueError("choices go with type = 'choice'")
        if self.signed and self.type not in ("int", "float"):
            raise ValueError("signed applies to int and float vars only")
        return self


class TemplateSettings(BaseModel):
    """One argv template (``[renderers.command.templates.<name>]``)."""

    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1)
    vars: dict[str, VarSpec] = {}  # name → "str" | "int" | "float" | "path" | "output" | [choices] | table
    timeout: float | None = Field(default=None, gt=0)  # seconds for one run
    exit_codes: dict[int, ErrorKind] = {}  # e.g. {2 = "invalid_input"}; other failures: on_error
    on_error: ErrorKind = ErrorKind.UNKNOWN
    env: dict[str, str] = {}  # extra environment for the command
    progress: str | None = None  # regex whose first group is a percent, matched on output lines
    allow_shell: bool = False  # accept an argv that runs a shell or inline interpreter code

    @field_validator("progress")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"bad progress regex: {exc}") from exc
        if groups < 1:
            raise ValueError("progress regex needs a group capturing the percent")
        return value

    @model_validator(mode="after")
    def _placeholders_match_vars(self) -> TemplateSettings:
        if not self.argv[0] or PLACEHOLDER.search(self.argv[0]):
            raise ValueError("argv[0] must be a fixed executable, without placeholders")
        used = {name for arg in self.argv for name in PLACEHOLDER.findall(arg)}
        undeclared = sorted(used - set(self.vars))
        if undeclared:
            raise ValueError(f"placeholders without a declared var: {', '.join(undeclared)}")
        unused = sorted(set(self.vars) - used)
        if unused:
            raise ValueError(f"vars never used in argv: {', '.join(unused)}")
        reason = shell_reason(self.argv)
        if reason is not None and not self.allow_shell:
            raise ValueError(
                f"argv {reason}, so job data would reach a shell or inline code; "
                "set allow_shell = true if that is really meant"
            )
        return self

    def shell_warning(self) -> str | None:
        """What ``doctor`` says about an ``allow_shell`` template, or None."""
        reason = shell_reason(self.argv) if self.allow_shell else None
        return None if reason is None else f"{reason}: job data reaches a shell or inline code"

    def standing_alone(self) -> frozenset[str]:
        """Vars whose placeholder is a whole argument somewhere (``{n}``, not ``--n={n}``)."""
        return frozenset(found.group(1) for arg in self.argv[1:] if (found := PLACEHOLDER.fullmatch(arg)))


class CommandSettings(Settings):
    templates: dict[str, TemplateSettings] = {}


class CommandParams(Params):
    template: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="template name from config")
    vars: dict[str, StrictStr | StrictInt | StrictFloat] = Field(
        default_factory=dict, description="values for the template's vars"
    )


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


def _number(name: str, spec: VarSpec, value: Any) -> int | float:
    if spec.type == "int":
        if isinstance(value, str) and _INT.match(value):
            value = int(value)
        if not isinstance(value, int):
            raise _invalid(f"var {name!r} must be an integer")
        if not -MAX_INT < value < MAX_INT:
            raise _invalid(f"var {name!r} is out of range (more than 18 digits)")
        return value
    try:
        if isinstance(value, str) and len(value) > MAX_NUMBER_CHARS:
            raise ValueError(value)
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except (ValueError, OverflowError):  # OverflowError: an int too large for a float
        number = math.nan
    if not math.isfinite(number):
        raise _invalid(f"var {name!r} must be a finite number")
    return number


def check_value(name: str, spec: VarSpec, value: Any, *, alone: bool = False) -> VarValue:
    """One var's value checked against its declaration; ``alone``: its placeholder is a whole
    argument somewhere in argv. Pure."""
    if isinstance(value, bool):
        raise _invalid(f"var {name!r}: booleans are not accepted")
    if spec.type == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise _invalid(f"var {name!r} must be one of {', '.join(spec.choices)}")
        return value
    if spec.type in ("int", "float"):
        number = _number(name, spec, value)
        if alone and not spec.signed and str(number).startswith("-"):
            raise _invalid(
                f"var {name!r} is negative ({number}) where it is a whole argument, which would read "
                "as an option; the template must declare it signed = true to allow that"
            )
        return number
    if not isinstance(value, str):
        raise _invalid(f"var {name!r} must be a string")
    if "\x00" in value:
        raise _invalid(f"var {name!r} contains a NUL byte")
    if not is_text(value):
        raise _invalid(f"var {name!r} is not valid UTF-8 text: {show(value, 60)}")
    if spec.type == "path":
        check_relative_or_within(value)
        return value
    if spec.type == "output":
        return plain_name(value, what=f"var {name!r}")
    if value.startswith("-"):
        raise _invalid(
            f"var {name!r} must not start with '-' (it could be read as an option): {show(value, 60)}"
        )
    if len(value) > MAX_STR_CHARS:
        raise _invalid(f"var {name!r} is longer than {MAX_STR_CHARS} characters")
    return value


def check_vars(template: TemplateSettings, given: Mapping[str, Any]) -> dict[str, VarValue]:
    """All of a template's vars, checked; unknown or missing vars are refused."""
    unknown = sorted(set(given) - set(template.vars))
    if unknown:
        shown = ", ".join(show(name, 40) for name in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise _invalid(f"unknown vars: {shown} (expected: {', '.join(sorted(template.vars))})")
    missing = sorted(set(template.vars) - set(given))
    if missing:
        raise _invalid(f"missing vars: {', '.join(missing)}")
    alone = template.standing_alone()
    return {
        name: check_value(name, spec, given[name], alone=name in alone)
        for name, spec in template.vars.items()
    }


def fill(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace ``{name}`` tokens in each argv element, in one pass; argv[0] is never touched."""

    def swap(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return [argv[0], *(PLACEHOLDER.sub(swap, arg) for arg in argv[1:])]


def percent_from(line: str, pattern: re.Pattern[str]) -> float | None:
    found = pattern.search(line)
    if not found:
        return None
    try:
        return max(0.0, min(100.0, float(found.group(1))))
    except ValueError:
        return None


class CommandRenderer(Renderer[CommandSettings]):
    name = "command"
    Params = CommandParams
    Settings = CommandSettings

    def template(self, name: str) -> TemplateSettings:
        found = self.settings.templates.get(name)
        if found is None:
            known = ", ".join(sorted(self.settings.templates)) or "none"
            raise _invalid(f"unknown command template {name!r} (configured: {known})")
        return found

    def doctor(self) -> Health:
        templates = self.settings.templates
        if not templates:
            return Health(True, "no templates configured")
        warnings = [
            f"template {name!r} {warning}"
            for name, template in sorted(templates.items())
            if (warning := template.shell_warning()) is not None
        ]
        return Health(True, "; ".join([f"{len(templates)} templates", *warnings]))

    def validate(self, params: Mapping[str, Any]) -> CommandParams:
        parsed = CommandParams.model_validate(dict(params))
        template = self.template(parsed.template)
        values = check_vars(template, parsed.vars)
        roots = self.env.input_roots if self.env is not None else ()
        for name, spec in template.vars.items():
            if spec.type == "path":
                check_relative_or_within(str(values[name]), roots)
        return parsed

    def cache_inputs(self, params: Any, env: RendererEnv) -> list[Path]:
        """The files of the template's ``path`` vars, in declaration order."""
        if not isinstance(params, CommandParams):
            params = self.validate(params)
        template = self.template(params.template)
        values = check_vars(template, params.vars)
        return [
            resolve_confined(str(values[name]), env.input_roots)
            for name, spec in template.vars.items()
            if spec.type == "path"
        ]

    def tool_version(self) -> str:
        templates = {
            name: {
                "definition": template.model_dump(mode="json"),
                # found as the child finds it: on the PATH of the environment it runs with
                "executable": identity(template.argv[0], {**os.environ, **template.env}.get("PATH")),
            }
            for name, template in self.settings.templates.items()
        }
        return f"command/1 {digest(templates)}"

    def render(self, params: CommandParams, ctx: RenderContext) -> dict[str, Any]:
        with contextlib.ExitStack() as opened:
            template = self.template(params.template)
            values = check_vars(template, params.vars)
            fds: list[int] = []
            for name, spec in template.vars.items():
                if spec.type == "path":  # the command reads the file we opened, never its name again
                    fds.append(open_confined(str(values[name]), ctx.env.input_roots))
                    opened.callback(os.close, fds[-1])
                    values[name] = fd_path(fds[-1])
            return self._run(params, template, values, fds, ctx)

    def _run(
        self,
        params: CommandParams,
        template: TemplateSettings,
        values: dict[str, VarValue],
        fds: list[int],
        ctx: RenderContext,
    ) -> dict[str, Any]:
        staging = Path(ctx.staging_dir)
        filled: dict[str, str] = {}
        outputs: list[str] = []
        for name, spec in template.vars.items():
            value = values[name]
            if spec.type == "output":
                outputs.append(str(value))
                filled[name] = str(staging / str(value))
            else:
                filled[name] = str(value)
        argv = fill(template.argv, filled)
        stage = f"{params.template}: running"
        ctx.progress(0.0, stage)
        pattern = re.compile(template.progress) if template.progress else None
        best = [0.0]

        def on_line(line: str, stream: str) -> None:
            percent = percent_from(line, pattern) if pattern else None
            if percent is not None and percent > best[0]:
                best[0] = percent
                ctx.progress(percent, stage)

        env = {**os.environ, **template.env}
        done = run(
            argv,
            ctx,
            cwd=staging,
            env=env,
            on_line=on_line,
            timeout=template.timeout,
            what=argv[0],
            pass_fds=fds,
        )
        if done.returncode != 0:
            tail = " | ".join(done.tail[-5:]) or "no output"
            if len(tail) > 700:
                tail = "..." + tail[-700:]
            if done.returncode < 0:
                error_kind = ErrorKind.UNKNOWN
                how = f"was killed by signal {-done.returncode}"
            else:
                error_kind = template.exit_codes.get(done.returncode, template.on_error)
                how = f"exited with code {done.returncode}"
            raise RenderError(error_kind, f"template {params.template!r} {how}: {tail}")
        missing = [name for name in outputs if not (staging / name).is_file()]
        if missing:
            raise RenderError(
                ErrorKind.UNKNOWN, f"template {params.template!r} did not create {', '.join(missing)}"
            )
        produced = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        ctx.progress(100.0, "done")
        return {
            "outputs": produced,
            "size_bytes": sum((staging / name).stat().st_size for name in produced),
            "returncode": done.returncode,
            "render_seconds": round(done.seconds, 3),
        }
