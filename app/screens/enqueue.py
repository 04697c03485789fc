"""The enqueue form (``n``): renderer, params as JSON and/or key=value, job type, priority, name.

Params are checked on every keystroke with ``farm.submit.build_spec``, the same validation the
API runs before any Redis write, and the error is shown inline; an invalid form submits nothing.
The submit itself runs in a thread worker; the form closes with the new job id.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from farm.errors import FarmError, InvalidJobError
from farm.render import RegistryError
from farm.submit import JobSpec, build_spec
from farm.terminal import printable

from ..params import parse_params
from ..source import Source


def type_name(annotation: Any) -> str:
    """A param's type as an operator would write it: ``float``, ``'low' | 'high'``, ``str | None``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(repr(member.value) for member in annotation)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def params_help(source: Source, renderer: str) -> Text:
    """One line per param of the renderer's model: name, type, default, description."""
    try:
        model = source.registry.get(renderer).Params
    except (KeyError, RegistryError) as exc:
        return Text(str(exc), style="red")
    text = Text()
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = f"= {field.default_factory()!r}"  # type: ignore[call-arg]
        else:
            default = f"= {field.default!r}"
        text.append(name, style="bold")
        text.append(f": {type_name(field.annotation)} {default}", style="dim")
        if field.description:
            text.append(f"  {field.description}", style="dim italic")
        text.append("\n")
    text.rstrip()
    return text


class EnqueueScreen(ModalScreen[str | None]):
    CSS_PATH = "enqueue.tcss"

    BINDINGS = [
        Binding("ctrl+s", "submit", "Submit"),
        Binding("escape", "cancel", "Cancel"),
    ]

    class Submitted(Message):
        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.spec: JobSpec | None = None
        self.params: dict[str, Any] = {}
        self.error = ""
        self.busy = False

    def compose(self) -> ComposeResult:
        names = self.source.registry.names()
        job_types = self.source.config.queues.job_types
        with VerticalScroll(id="dialog"):
            with Vertical(id="actions"):  # docked: the verdict and buttons stay in view
                yield Static(id="verdict")
                with Horizontal(id="buttons"):
                    yield Button("Submit (ctrl+s)", variant="primary", id="submit", compact=True)
                    yield Button("Cancel (esc)", id="cancel", compact=True)
            yield Label("renderer")
            yield Select(
                [(n, n) for n in names],
                value="demo" if "demo" in names else names[0],
                allow_blank=False,
                id="renderer",
            )
            yield Static(id="fields")
            yield Label("params — JSON and/or key=value")
            yield Input(placeholder='{"duration": 3} stages=4', id="params")
            with Horizontal(id="options"):
                with Vertical():
                    yield Label("job type")
                    yield Select(
                        [(f"{t} ({p.value})", t) for t, p in job_types.items()],
                        prompt="none",
                        id="job_type",
                    )
                with Vertical():
                    yield Label("priority")
                    yield Select(
                        [(p, p) for p in ("high", "medium", "low")],
                        prompt="from job type",
                        id="priority",
                    )
            yield Label("name (optional)")
            yield Input(placeholder="e.g. intro-3", id="name")
            yield Label("after (optional) — job ids or 6+ char prefixes to wait for")
            yield Input(placeholder="e.g. 7a99ca77 73140ffb", id="after")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "enqueue a job"
        self.query_one("#params", Input).focus()
        self.check()

    def _value(self, selector: str) -> str | None:
        value = self.query_one(selector, Select).value
        return value if isinstance(value, str) else None

    def _after(self) -> list[str]:
        return self.query_one("#after", Input).value.replace(",", " ").split()

    def check(self) -> JobSpec | None:
        """Validate the form as it stands; show the verdict inline."""
        renderer = self._value("#renderer") or ""
        self.query_one("#fields", Static).update(params_help(self.source, renderer))
        self.spec = None
        try:
            self.params = parse_params(self.query_one("#params", Input).value)
            self.spec = build_spec(
                self.source.config,
                self.source.registry,
                renderer,
                self.params,
                priority=self._value("#priority"),
                job_type=self._value("#job_type"),
                name=self.query_one("#name", Input).value.strip() or None,
                after=self._after() or None,
            )
            self.error = ""
        except (InvalidJobError, RegistryError) as exc:
            self.error = printable(exc)
        except Exception as exc:  # a form must never take the whole farm down with it
            self.error = printable(f"cannot check these params: {type(exc).__name__}: {exc}")[:300]
        self._show()
        return self.spec

    def _show(self, note: str = "") -> None:
        verdict = self.query_one("#verdict", Static)
        verdict.set_class(bool(self.error), "-error")
        if self.error:
            verdict.update(Text(f"✗ {self.error}"))
        elif self.spec is not None:
            spec = self.spec
            verdict.update(
                Text(f"✓ valid: {spec.renderer}, queue {spec.priority.value}, timeout {spec.timeout}s {note}")
            )

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self.check()

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        spec = self.check()
        if spec is None or self.busy:
            return
        self.busy = True
        self._show("— submitting…")
        options = {"priority": self._value("#priority"), "job_type": spec.job_type, "name": spec.name}
        self._submit(spec.renderer, self.params, options, self._after())

    @work(thread=True, group="submit", exit_on_error=False)
    def _submit(
        self, renderer: str, params: dict[str, Any], options: dict[str, Any], after: list[str]
    ) -> None:
        try:
            if after:  # prefixes as the table shows them
                options = {**options, "after": [self.source.resolve_id(text) for text in after]}
            job_id = self.source.submit(renderer, params, **options)
        except FarmError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # report inline, keep the form
            self.post_message(self.Failed(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Submitted(job_id))

    def on_enqueue_screen_submitted(self, message: EnqueueScreen.Submitted) -> None:
        self.dismiss(message.job_id)

    def on_enqueue_screen_failed(self, message: EnqueueScreen.Failed) -> None:
        self.busy = False
        self.error = f"not submitted: {message.error}"
        self._show()
