"""The farm's store on the render host: where uploaded inputs and every box's outputs live.

Layout (all under the render host's config):
- ``<data_dir>/store-id``: a random id naming this store; ``farm serve`` publishes it (with its URL)
  in ``farm:serve``, and a worker whose own data dir holds the same id shares the store's disk;
- ``<data_dir>/uploads/.partial/<job_id>/<name>``: files being uploaded with a submit;
- ``<data_dir>/uploads/<job_id>/<name>``: a submitted job's inputs, once its submit landed;
- ``<output_dir>/.partial/<job_id>.<token>/``: one attempt's outputs (a local horse writes them
  there; a worker on another box sends them there), published as ``<output_dir>/<job_id>/`` only
  when that attempt's end is the one recorded (see ``worker/rendering.py``).
File names inside a job are relative paths with ``/`` (``scenes/intro.py``), checked by ``file_name``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath

from redis import Redis
from redis.exceptions import WatchError

from .. import keys
from ..config import FarmConfig
from ..errors import InvalidJobError
from ..records import safe_json

STORE_ID = "store-id"
UPLOADS = "uploads"
PARTIAL = ".partial"
MAX_NAME_CHARS = 512
CHUNK = 1024 * 1024
_BAD = re.compile(r"[\x00-\x1f\x7f\\]")


def store_id(config: FarmConfig, *, create: bool = False) -> str | None:
    path = config.data_dir / STORE_ID
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    new = secrets.token_hex(16)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(new + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return new


def uploads_dir(config: FarmConfig, job_id: str) -> Path:
    return config.data_dir / UPLOADS / job_id


def uploads_partial(config: FarmConfig, job_id: str) -> Path:
    return config.data_dir / UPLOADS / PARTIAL / job_id


def file_name(name: object, *, what: str = "file name") -> str:
    """A file's name inside a job: a relative path of plain parts (no ``..``, no control chars)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidJobError(f"{what} must be a relative path of at most {MAX_NAME_CHARS} characters")
    if _BAD.search(name) or name.startswith("/"):
        raise InvalidJobError(f"{what} must be a relative path without control characters: {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJobError(f"{what} must be valid text: {name!r}") from None
    parts = PurePosixPath(name).parts
    if not parts or any(part in ("..", ".", "") for part in parts) or parts[0].startswith("-"):
        raise InvalidJobError(f"{what} must be a plain relative path: {name!r}")
    return "/".join(parts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def inside(base: Path, name: str) -> Path:
    """``base / name`` for a checked ``name``, refusing anything that would leave ``base``."""
    target = base / file_name(name)
    if not target.resolve().is_relative_to(base.resolve()):
        raise InvalidJobError(f"file name leaves its directory: {name!r}")
    return target


# -- outputs -------------------------------------------------------------------------------------


def staging_dir(config: FarmConfig, job_id: str, token: str) -> Path:
    """Where one attempt's outputs wait until its end is recorded."""
    return config.output_dir / PARTIAL / f"{job_id}.{token}"


def publish_target(config: FarmConfig, job_id: str, token: str) -> Path:
    """Where a job's outputs are published: ``<output_dir>/<job_id>/``, or ``<job_id>.<token>/``
    when that name is taken by an older job's outputs (an explicit id reused), never replaced."""
    final = config.output_dir / job_id
    return final if not final.exists() else config.output_dir / f"{job_id}.{token[:12] or 'new'}"


def describe(directory: Path, names: list[str]) -> list[dict[str, object]]:
    """Name, size and sha256 of each named file in ``directory``."""
    return [
        {"name": name, "size": (directory / name).stat().st_size, "sha256": sha256_file(directory / name)}
        for name in names
    ]


def publish(config: FarmConfig, staging: Path, result: dict[str, object]) -> None:
    """Move a winning attempt's staging dir to the result's ``output_dir`` in one rename. Called
    only after the run's end was recorded with its token. Existing outputs are never replaced."""
    if not staging.exists():
        return
    target = Path(str(result.get("output_dir") or ""))
    if not result.get("outputs") or not target.is_relative_to(config.output_dir) or target.exists():
        shutil.rmtree(staging, ignore_errors=True)
        return
    os.replace(staging, target)


def discard(config: FarmConfig, job_id: str, token: str) -> None:
    shutil.rmtree(staging_dir(config, job_id, token), ignore_errors=True)


def publish_winner(connection: Redis, config: FarmConfig, job_id: str, token: str) -> bool:
    """Publish the staging dir of run ``token`` if that run's end is the one recorded (a finished
    job, ``farm_ended_by`` == token), where the job's result says — or, for a run rendered on
    another box (no ``output_dir`` yet), at ``publish_target``, then record that place in the
    job's result. Returns True when the files are (now) published; a loser's dir is removed."""
    staging = staging_dir(config, job_id, token)
    job_key = keys.job(job_id)
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job_key)
                status, ended_by, blob = pipe.hmget(job_key, keys.RQ_STATUS, keys.F_ENDED_BY, keys.F_RESULT)
                if status != b"finished" or ended_by is None or ended_by.decode("utf-8", "replace") != token:
                    pipe.unwatch()
                    shutil.rmtree(staging, ignore_errors=True)
                    return False
                try:
                    result = safe_json(blob) if blob else {}
                except ValueError:
                    result = {}
                if not isinstance(result, dict):
                    result = {}
                if result.get("output_dir"):
                    pipe.unwatch()
                    publish(config, staging, result)
                    return Path(str(result["output_dir"])).exists()
                target = publish_target(config, job_id, token)
                names = [str(f.get("name")) for f in result.get("files") or [] if isinstance(f, dict)]
                result = {**result, "output_dir": str(target), "outputs": [str(target / n) for n in names]}
                pipe.multi()
                pipe.hset(job_key, keys.F_RESULT, json.dumps(result))
                pipe.execute()
                publish(config, staging, result)
                return True
            except WatchError:
                continue
