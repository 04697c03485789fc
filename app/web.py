"""``farm web``: the same Textual UI in a browser, served by textual-serve (``run_web``, the
``farm.ui`` entry point ``web``). Each browser tab runs its own ``farm tui`` process.

Where it listens: ``[web] bind`` ("HOST:PORT"), else 127.0.0.1 on ``[web] port`` (8643) or
``--port``. On loopback nothing more is asked; on any other address every request (the page, its
scripts, its websocket) needs the farm token (``farm token`` prints it): open
``http://HOST:PORT/?token=TOKEN`` once, and the token moves into a cookie (HttpOnly, SameSite
strict) and out of the address bar. Always: the websocket only answers pages of this server
(``Origin`` must match ``Host``), and a loopback server only answers loopback host names, so a
web page elsewhere cannot drive the farm through the operator's browser.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import re
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from rich.logging import RichHandler
from textual_serve.server import Server

from farm.config import FarmConfig, load_config
from farm.files.token import is_loopback

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
COOKIE = "farm_web_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def web_address(config: FarmConfig, port: int | None = None, bind: str | None = None) -> tuple[str, int]:
    """(host, port) to listen on: ``bind`` or ``[web] bind`` ("HOST[:PORT]"), else 127.0.0.1;
    the port from ``--port``, the bind, or ``[web] port`` (8643)."""
    bind = bind or config.web.bind
    default_port = config.web.port
    if bind:
        host, sep, bound_port = bind.rpartition(":")
        if not sep or "]" in bound_port or (host and ":" in host and not host.endswith("]")):
            host, bound_port = bind, ""  # no port given (or a bare IPv6 address)
        return host.strip("[]") or "0.0.0.0", port or int(bound_port or default_port)  # noqa: S104
    return "127.0.0.1", port or default_port


def tui_command(config: FarmConfig) -> str:
    """The command textual-serve runs for each browser tab: this Python's ``farm tui``."""
    argv = [sys.executable, "-m", "farm"]
    if config.source:
        argv += ["--config", str(config.source)]
    return shlex.join([*argv, "tui"])


TOKEN_IN_TEXT = re.compile(r"(token=)[^\s&\"']+")


def redact_token(record: logging.LogRecord) -> bool:
    """A logging filter: the access log must not keep the token of a ``/?token=...`` request."""
    text = record.getMessage()
    if "token=" in text:
        record.msg, record.args = TOKEN_IN_TEXT.sub(r"\1***", text), None
    return True


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


class FarmWebServer(Server):
    """textual-serve's Server with the farm's checks in front of every route."""

    def __init__(self, command: str, host: str, port: int, token: str | None, title: str = "farm") -> None:
        super().__init__(command, host=host, port=port, title=title)
        self.token = token
        self.loopback = is_loopback(host)

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    def _token_ok(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if self.loopback and not is_loopback(_host_name(host)):
            raise web.HTTPForbidden(text="farm web: this server answers loopback addresses only\n")
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != host:
                raise web.HTTPForbidden(text="farm web: websocket from another site refused\n")
        if not self._token_ok(request):
            raise web.HTTPUnauthorized(
                text="farm web: the farm token is required: open /?token=TOKEN (`farm token` prints it)\n"
            )
        if self.token is not None and "token" in request.query:
            # Keep the token out of the address bar and history: it lives in a cookie from now on.
            rest = {k: v for k, v in request.query.items() if k != "token"}
            response = web.HTTPSeeOther(location=str(request.rel_url.with_query(rest)))
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
            raise response
        return await handler(request)

    def initialize_logging(self) -> None:
        super().initialize_logging()
        for handler in logging.getLogger().handlers:
            handler.addFilter(redact_token)
            if isinstance(handler, RichHandler):
                handler.tracebacks_show_locals = False  # locals would show the token

    async def handle_index(self, request: web.Request) -> Any:
        # The page points the browser at the websocket and the scripts: use the address the
        # browser used (behind 0.0.0.0 the bind address means nothing to it).
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)


def run_web(config: FarmConfig, port: int | None = None, *, bind: str | None = None) -> None:
    """Serve the UI until Ctrl-C (the ``farm web`` command); ``bind`` overrides ``[web] bind``."""
    host, bound = web_address(config, port, bind)
    token = None
    if not is_loopback(host):
        from farm.files.token import read_token

        token = read_token(config, create=True)
    server = FarmWebServer(tui_command(config), host, bound, token)
    shown = "localhost" if host in ("0.0.0.0", "::") else host  # noqa: S104
    where = f"http://{shown}:{bound}/" + ("?token=<farm token>" if token else "")
    print(f"farm web: serving the farm's UI on {where}  (Ctrl-C stops)", flush=True)
    server.serve()


def main(argv: list[str] | None = None) -> None:
    """``python -m app.web [--config PATH] [--port P] [--bind HOST[:PORT]]``: ``farm web`` without the CLI."""
    parser = argparse.ArgumentParser(prog="python -m app.web", description=__doc__)
    parser.add_argument("--config")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bind", help="address to listen on (default [web] bind, else 127.0.0.1)")
    args = parser.parse_args(argv)
    run_web(load_config(args.config), args.port, bind=args.bind)


if __name__ == "__main__":
    main()
