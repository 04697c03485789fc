"""The farm token, and URLs signed with it.

The token is a shared secret: ``$FARM_TOKEN`` (``[serve] token_env``) or, on the render host, a
random one generated into ``<data_dir>/token`` with mode 0600 (``farm token`` prints it for the
operator to share). Uploads and workers' transfers send it as a bearer token. Downloads use URLs
signed with a key derived from it (HMAC-SHA256 over method, path and expiry), which expire after
``[serve] url_ttl`` seconds; nothing is listed or served without a valid signature or the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from ..config import FarmConfig
from ..errors import FarmError

TOKEN_FILE = "token"
MIN_TOKEN_CHARS = 16


class NoTokenError(FarmError):
    """No farm token here: set the token env var (the operator's ``farm token`` prints it)."""

    exit_code = 4


def token_path(config: FarmConfig) -> Path:
    return config.data_dir / TOKEN_FILE


def read_token(config: FarmConfig, *, create: bool = False) -> str:
    """The farm token: the env var, else the data dir's token file (created with ``create``)."""
    from_env = os.environ.get(config.serve.token_env, "").strip()
    if from_env:
        if len(from_env) < MIN_TOKEN_CHARS:
            raise NoTokenError(f"${config.serve.token_env} is shorter than {MIN_TOKEN_CHARS} characters")
        return from_env
    path = token_path(config)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            raise NoTokenError(
                f"no farm token: set ${config.serve.token_env} (on the render host, `farm token` prints it)"
            ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


def _key(token: str) -> bytes:
    return hmac.new(token.encode(), b"farm url signing v1", hashlib.sha256).digest()


def signature(token: str, method: str, path: str, expires: int) -> str:
    message = f"{method.upper()}\n{path}\n{expires}".encode()
    return hmac.new(_key(token), message, hashlib.sha256).hexdigest()


def sign(token: str, base_url: str, path: str, ttl: float, method: str = "GET") -> str:
    """``base_url + path`` with ``?expires=...&sig=...``; ``path`` is already URL-quoted."""
    expires = int(time.time() + ttl)
    return f"{base_url.rstrip('/')}{path}?expires={expires}&sig={signature(token, method, path, expires)}"


def verify(token: str, method: str, path: str, expires: str | None, sig: str | None) -> bool:
    """Is this a valid, unexpired signature for ``method path``?"""
    if not expires or not sig or not expires.isdigit():
        return False
    if int(expires) < time.time():
        return False
    return hmac.compare_digest(signature(token, method, path, int(expires)), sig)


def bearer_ok(token: str, header: str | None) -> bool:
    """Does an ``Authorization`` header carry the farm token?"""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


def quoted(*parts: str) -> str:
    """A URL path from parts (each quoted, slashes inside a part kept for nested file names)."""
    return "/" + "/".join(quote(part, safe="/") for part in parts)


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine's loopback (``localhost``, 127.0.0.0/8, ::1,
    bracketed or not): where farm serve's /metrics and farm web need no farm token."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
