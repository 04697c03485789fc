"""The subprocess runner: streaming, carriage returns, process group, cancel, deadline, cleanup."""

from __future__ import annotations

import os
import resource
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError, SimpleContext
from renderers.proc import LineSplitter, descendants, run
from tests.renderers.conftest import ContextFactory
from tests.renderers.helpers import processes_mentioning
from tests.util import wait_for

PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def test_splitter_handles_cr_crlf_and_split_utf8() -> None:
    splitter = LineSplitter()
    got = splitter.feed(b"10%\r20%\r")
    got += splitter.feed(b"done\r")
    got += splitter.feed(b"\nna\xc3")  # "\r\n" and a UTF-8 char split across reads
    got += splitter.feed(b"\xafve\n")
    got += splitter.feed(b"tail without break")
    got += splitter.close()
    assert [line for line in got if line] == ["10%", "20%", "done", "naïve", "tail without break"]


def test_splitter_cuts_endless_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"x" * 70_000) == ["x" * 70_000]


def test_streams_both_outputs_line_by_line(make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    seen: list[tuple[str, str]] = []
    code = """
        import sys
        sys.stdout.write("out 1\\nout 2\\n"); sys.stdout.flush()
        bar = "Animation 0: Write: {:>3}%|"
        sys.stderr.write("\\r".join(bar.format(p) for p in (0, 50, 100)) + "\\n")
        sys.exit(3)
    """
    done = run(py(code), ctx, on_line=lambda line, stream: seen.append((line, stream)))
    assert done.returncode == 3
    assert ("out 1", "stdout") in seen and ("out 2", "stdout") in seen
    assert [line for line, stream in seen if stream == "stderr"] == [
        "Animation 0: Write:   0%|",
        "Animation 0: Write:  50%|",
        "Animation 0: Write: 100%|",
    ]
    assert set(ctx.lines) == {line for line, _ in seen}
    assert done.tail[-1] in ctx.lines


def test_tail_keeps_the_last_lines_and_quiet_stdout_is_not_logged(make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    code = """
        import sys
        for i in range(100): print(f"progress={i}")
        for i in range(50): print(f"err {i}", file=sys.stderr)
    """
    seen: list[str] = []
    done = run(py(code), ctx, quiet_stdout=True, tail_lines=5, on_line=lambda line, _: seen.append(line))
    assert done.tail == tuple(f"err {i}" for i in range(45, 50))
    assert not any(line.startswith("progress=") for line in ctx.lines)
    assert "progress=99" in seen


def test_arguments_are_passed_literally_never_through_a_shell(
    make_ctx: ContextFactory, tmp_path: Path
) -> None:
    ctx = make_ctx()
    hostile = ["$(touch pwned)", "; touch pwned2", "`touch pwned3`", "*", "a\nb", "|| true"]
    done = run(py("import sys; print(repr(sys.argv[1:]))") + hostile, ctx, cwd=tmp_path)
    assert done.returncode == 0
    assert ctx.lines == [repr(hostile)]
    assert not list(tmp_path.glob("pwned*"))


def test_child_stays_in_our_process_group_and_stdin_is_empty(make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    run(py("import os, sys; print(os.getpgrp(), os.getsid(0), repr(sys.stdin.read()))"), ctx)
    assert ctx.lines == [f"{os.getpgrp()} {os.getsid(0)} ''"]


def test_cancel_kills_child_and_grandchildren(
    make_ctx: ContextFactory, tmp_path: Path, children_before: set[int]
) -> None:
    marker = f"marker-{tmp_path.name}"
    code = f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "{marker}-grandchild"])
        print("started", flush=True)
        time.sleep(60)
    """
    ctx = make_ctx(cancel_after=0.5)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        run([*py(code), marker], ctx)
    assert caught.value.kind is ErrorKind.CANCELED
    assert time.monotonic() - started < 2.0
    wait_for(lambda: not processes_mentioning(marker), timeout=5, what="no process left behind")
    assert set(descendants(os.getpid())) <= children_before


def test_timeout_argument_and_ctx_deadline(make_ctx: ContextFactory, children_before: set[int]) -> None:
    with pytest.raises(RenderError) as caught:
        run(py("import time; time.sleep(30)"), make_ctx(), timeout=0.3)
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert "0.3s" in caught.value.message
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        run(py("import time; time.sleep(30)"), make_ctx(deadline=time.monotonic() + 0.3))
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 1.5
    assert set(descendants(os.getpid())) <= children_before


def test_callback_error_kills_the_child(make_ctx: ContextFactory, tmp_path: Path) -> None:
    marker = f"cb-{tmp_path.name}"

    def explode(line: str, stream: str) -> None:
        raise ValueError("callback broke")

    with pytest.raises(ValueError, match="callback broke"):
        run(
            [*py("import time; print('hi', flush=True); time.sleep(60)"), marker], make_ctx(), on_line=explode
        )
    assert not processes_mentioning(marker)


def test_missing_executable_is_a_render_error(make_ctx: ContextFactory) -> None:
    with pytest.raises(RenderError) as caught:
        run(["/nonexistent/tool", "x"], make_ctx())
    assert caught.value.kind is ErrorKind.UNKNOWN
    assert "/nonexistent/tool" in caught.value.message


def test_background_grandchild_holding_the_pipe_does_not_hang(
    make_ctx: ContextFactory, tmp_path: Path
) -> None:
    marker = f"bg-{tmp_path.name}"
    code = f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "{marker}"])
        print("parent done")
    """
    started = time.monotonic()
    done = run(py(code), make_ctx())
    assert done.returncode == 0 and "parent done" in done.tail
    assert time.monotonic() - started < 5
    for pid in processes_mentioning(marker):  # clean up the deliberately orphaned sleeper
        os.kill(pid, 9)


def limited_ctx(env: RendererEnv, staging: Path, max_bytes: int) -> SimpleContext:
    return SimpleContext(job_id="big", staging_dir=staging, env=replace(env, max_output_bytes=max_bytes))


def test_a_child_killed_for_a_too_large_file_is_reported(
    env: RendererEnv, staging: Path, tmp_path: Path
) -> None:
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    big = tmp_path / "big.bin"
    with pytest.raises(RenderError) as caught:  # dd gets SIGXFSZ at the limit
        run(["dd", "if=/dev/zero", f"of={big}", "bs=64k", "count=64"], limited_ctx(env, staging, 200_000))
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert caught.value.message == (
        "dd exceeded limits.max_output_bytes (200000 bytes): it tried to write a larger file"
    )
    assert big.stat().st_size <= 200_000
    assert resource.getrlimit(resource.RLIMIT_FSIZE) == before  # ours is back as it was


def test_a_child_told_efbig_is_reported(env: RendererEnv, staging: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"  # Python ignores SIGXFSZ: its write fails with EFBIG instead
    code = f"open({str(big)!r}, 'wb').write(b'x' * 1_000_000)"
    with pytest.raises(RenderError, match=r"exceeded limits.max_output_bytes \(100000 bytes\)") as caught:
        run(py(code), limited_ctx(env, staging, 100_000))
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert big.stat().st_size <= 100_000


def test_files_under_the_limit_are_fine_and_grandchildren_inherit_it(
    env: RendererEnv, staging: Path, tmp_path: Path
) -> None:
    ctx = limited_ctx(env, staging, 300_000)
    code = f"""
        import resource, subprocess, sys
        open({str(tmp_path / "small.bin")!r}, 'wb').write(b'x' * 250_000)
        show = "import resource; print(resource.getrlimit(resource.RLIMIT_FSIZE)[0])"
        exec(show)
        subprocess.run([sys.executable, "-c", show])
    """
    done = run(py(code), ctx)
    assert done.returncode == 0 and ctx.lines == ["300000", "300000"]
