"""``farm web`` in a real headless Chromium (Debian's, driven by Playwright): the page shows the
same UI as the terminal, takes keys, and a server on a non-loopback address wants the farm token.

The terminal in the page draws on a canvas, so what it shows is read from the websocket that
feeds it (the UI's own terminal output, escapes stripped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm import Farm
from farm.config import FarmConfig
from farm.files.token import read_token
from tests.util import IN_CI, free_port, require_tool, wait_for

ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-B]|[=>78cDEHM])")


def playwright_api():
    try:
        from playwright import sync_api
    except ImportError:
        if IN_CI:
            pytest.fail("playwright (PyPI) is required in CI to drive Chromium")
        pytest.skip("playwright not installed")
    return sync_api


def status(url: str, headers: dict[str, str] | None = None) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class WebServer:
    def __init__(self, config: FarmConfig, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"web-{self.port}.log"
        argv = [
            sys.executable,
            "-m",
            "app.web",
            "--config",
            str(config.source),
            "--port",
            str(self.port),
            *args,
        ]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            try:
                status(self.base + "/")
            except OSError:
                return False
            return True

        wait_for(up, timeout=20, what="farm web listening")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


@pytest.fixture
def web_server(config: FarmConfig, tmp_path: Path) -> Iterator[WebServer]:
    server = WebServer(config, tmp_path)
    yield server
    server.stop()


def test_the_ui_in_chromium_shows_the_farm_and_takes_keys(web_server: WebServer, farm: Farm):
    chromium = require_tool("chromium")
    sync_api = playwright_api()
    farm.submit("demo", {}, name="web-seen")
    received: list[bytes] = []

    def screen() -> str:
        return ANSI.sub(b"", b"".join(received)).decode("utf-8", "replace")

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # Nothing leaves this machine (the page asks a web font of a CDN).
            page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())

            def on_socket(ws) -> None:
                ws.on(
                    "framereceived",
                    lambda frame: received.append(frame if isinstance(frame, bytes) else frame.encode()),
                )

            page.on("websocket", on_socket)
            page.goto(web_server.base + "/")
            deadline = time.monotonic() + 30
            wanted = ("queued", "jobs:", "web-seen", "redis", "connected")
            while not all(w in screen() for w in wanted):
                missing = [w for w in wanted if w not in screen()]
                assert time.monotonic() < deadline, f"{missing} not in the page: {screen()[:3000]!r}"
                page.wait_for_timeout(200)
            page.screenshot(path=str(web_server.log.with_suffix(".png")))

            page.mouse.click(700, 450)
            before = len(received)
            page.keyboard.press("?")
            deadline = time.monotonic() + 15
            while "this help" not in ANSI.sub(b"", b"".join(received[before:])).decode("utf-8", "replace"):
                assert time.monotonic() < deadline, "? opened no help in the page"
                page.wait_for_timeout(200)
        finally:
            browser.close()


def test_loopback_server_refuses_other_sites(web_server: WebServer):
    assert status(web_server.base + "/") == 200
    # DNS rebinding: a name that resolves to 127.0.0.1 but is not a loopback name.
    assert status(web_server.base + "/", {"Host": f"evil.example:{web_server.port}"}) == 403
    # A page elsewhere opening the websocket through the operator's browser.
    evil = {"Origin": "http://evil.example", "Connection": "Upgrade", "Upgrade": "websocket"}
    assert status(web_server.base + "/ws", evil) == 403


def test_non_loopback_bind_wants_the_farm_token(config: FarmConfig, tmp_path: Path):
    server = WebServer(config, tmp_path, "--bind", "0.0.0.0")
    try:
        token = read_token(config)  # created by farm web on first use
        assert status(server.base + "/") == 401
        assert status(server.base + "/ws") == 401
        assert status(server.base + "/static/js/textual.js") == 401
        assert status(server.base + "/?token=wrong") == 401
        assert status(server.base + f"/?token={token}") == 303  # on to /, the token in a cookie
        assert status(server.base + "/", {"Cookie": f"farm_web_token={token}"}) == 200
        assert "token" in server.log.read_text() and token not in server.log.read_text()
    finally:
        server.stop()
