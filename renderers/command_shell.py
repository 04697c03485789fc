"""Which command templates hand job data to a shell, or to an interpreter as inline code.

Used by ``renderers.command`` when a template is loaded: a template whose argv runs a shell
(``sh -c "echo {x}"``), an interpreter given a program inline (``python3 -c``, ``perl -e``,
``node -e``, ``awk``/``sed`` programs...) or either of those behind a wrapper (``env``, ``nice``,
``timeout``, ``xargs``...) loads only with ``allow_shell = true``, and ``CommandRenderer.doctor``
then names it. Executables are compared by base name, so ``/bin/sh`` is ``sh``. A guard rail for
the operator writing the config, not a sandbox: it reads argv the way a person would. Pure.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

# programs whose arguments reach a shell however they are called
SHELLS = frozenset({
    "sh", "bash", "rbash", "zsh", "dash", "ksh", "ksh93", "mksh", "oksh", "pdksh", "ash", "yash", "posh",
    "fish", "csh", "tcsh", "busybox", "toybox", "pwsh", "powershell", "elvish", "nu", "xonsh", "rc",
    "ssh", "su", "watch",  # run their command line through a shell (remote or local)
})  # fmt: skip
# interpreters, and the options that hand them a program inline
INLINE: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(name), re.compile(flag))
    for name, flag in (
        (r"(python|pypy)[0-9.]*", r"-[A-Za-z]*c.*"),  # -c, -Ic, -c'code'
        (r"perl[0-9.]*", r"-[A-Za-z]*[eE].*"),
        (r"ruby[0-9.]*", r"-[A-Za-z]*e.*"),
        (r"(node|nodejs|deno|bun)", r"-[A-Za-z]*[ep]|--(eval|print)(=.*)?|eval"),
        (r"php[0-9.]*", r"-[A-Za-z]*[rBRE].*"),
        (r"(lua|luajit)[0-9.]*", r"-[A-Za-z]*e.*"),
        (r"(Rscript|R)", r"-e|--expr(=.*)?"),
        (r"julia", r"-[eE]|--eval|--print"),
        (r"osascript", r"-e"),
        (r"expect", r"-c"),
    )
)
# programs whose first operand is their program, unless it comes from a file (-f)
PROGRAM_FIRST = re.compile(r"(g|m|n)?awk|g?sed")
# programs that run another program named further along their argv
WRAPPERS = frozenset({
    "env", "nice", "nohup", "timeout", "stdbuf", "setsid", "ionice", "taskset", "chrt", "time",
    "sudo", "doas", "runuser", "xargs", "parallel", "find", "flock", "prlimit", "chroot", "unshare",
    "nsenter", "firejail", "systemd-run", "cgexec", "numactl", "strace", "ltrace", "valgrind", "exec",
    "command", "caffeinate", "setpriv", "catchsegv",
})  # fmt: skip
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def _why(argv: Sequence[str], index: int) -> str | None:
    name = posixpath.basename(argv[index])
    rest = argv[index + 1 :]
    if name in SHELLS:
        return f"runs {name}"
    for program, flag in INLINE:
        if program.fullmatch(name) and any(flag.fullmatch(arg) for arg in rest):
            return f"runs {name} with inline code"
    if PROGRAM_FIRST.fullmatch(name) and not any(arg == "-f" or arg.startswith("--file") for arg in rest):
        return f"runs {name} with an inline program"
    if name == "env" and any(arg.startswith(("-S", "--split-string")) for arg in rest):
        return "runs env -S, which splits a string into a command line"
    return None


def shell_reason(argv: Sequence[str]) -> str | None:
    """Why running ``argv`` hands job data to a shell or inline code (``"runs sh"``), or None.

    Only the executable is read, unless it is a wrapper: then every fixed word after it counts
    too (its options and operands are not parsed, so a shell anywhere behind it is found)."""
    if not argv:
        return None
    last = len(argv) if posixpath.basename(argv[0]) in WRAPPERS else 1
    for index in range(last):
        if not _PLACEHOLDER.search(argv[index]):
            reason = _why(argv, index)
            if reason is not None:
                return reason
    return None
