"""The demo renderer: simulated stages with progress, for `farm up --demo`, tests and benchmarks."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from farm.models import ErrorKind
from farm.render import Params, RenderContext, Renderer, RenderError, Settings


class DemoParams(Params):
    duration: float = Field(default=2.0, ge=0, le=86_400, description="seconds the render takes")
    stages: int = Field(default=3, ge=1, le=100, description="number of simulated stages")
    fail_with: ErrorKind | None = Field(default=None, description="fail at the end with this error kind")
    fail_attempts: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="only fail the first N attempts (then succeed); default: always",
    )


STAGE_NAMES = ("prepare", "layout", "animate", "encode", "mux", "publish")


class DemoRenderer(Renderer[Settings]):
    name = "demo"
    subprocesses = False  # pure Python: stopping the horse stops it
    Params = DemoParams

    def render(self, params: DemoParams, ctx: RenderContext) -> dict[str, Any]:
        step = params.duration / params.stages
        for index in range(params.stages):
            stage = f"stage {index + 1}/{params.stages}: {STAGE_NAMES[index % len(STAGE_NAMES)]}"
            ctx.progress(100.0 * index / params.stages, stage)
            ctx.log(stage)
            if step:
                _sleep_unless_cancelled(step, ctx)
        if params.fail_with is not None and _should_fail(params, ctx):
            raise RenderError(params.fail_with, f"demo failure ({params.fail_with.value}) as requested")
        ctx.progress(100.0, "done")
        return {"outputs": [], "duration": params.duration, "stages": params.stages}

    def tool_version(self) -> str:
        return "demo/1"  # no tool and no input files (cache_inputs stays empty)


def _should_fail(params: DemoParams, ctx: RenderContext) -> bool:
    if params.fail_attempts is None:
        return True
    return ctx.attempt <= params.fail_attempts


def _sleep_unless_cancelled(seconds: float, ctx: RenderContext) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if ctx.cancelled():
            raise RenderError(ErrorKind.CANCELED, "canceled")
        time.sleep(min(left, 0.1))
