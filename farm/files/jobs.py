"""What the teammate API does with files: submits that carry input files, and a job's outputs.

A submit with files uploads them to ``farm serve`` first (under the job id the client chose),
then writes the job (which records the files' names, sizes and checksums), then commits the
upload. A refused submit aborts the upload, so nothing is left behind in Redis or on disk; a
submitter that dies in between leaves a partial upload that ``farm serve`` removes by itself.
Outputs are listed from the job's result with signed, expiring URLs, and downloaded streamed,
resumable and checksum-verified; on the render host itself, without ``farm serve``, they are
copied from the store directly.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis import Redis

from ..config import FarmConfig
from ..errors import FarmError, FarmUnavailableError, InvalidJobError
from ..models import JobInfo, JobStatus, OutputFile
from ..submit import JobSpec
from . import transfer
from .store import file_name, inside, sha256_file
from .token import NoTokenError, quoted, read_token, sign

Planned = list[tuple[str, Path]]


def _serve(connection: Redis) -> str:
    base = transfer.serve_url(connection)
    if not base:
        raise FarmUnavailableError("files need farm serve, and it has not run on this farm (start farm up)")
    return base


def submit_with_files(
    connection: Redis,
    config: FarmConfig,
    specs: Sequence[JobSpec],
    plans: Sequence[Planned],
    enqueue: Callable[[list[JobSpec]], None],
) -> list[JobSpec]:
    """Upload each spec's planned files, enqueue the specs (with their files recorded), commit.
    All or nothing: a refused enqueue aborts every upload of the batch."""
    if not any(plans):
        enqueue(list(specs))
        return list(specs)
    base = _serve(connection)
    token = read_token(config)
    done: list[JobSpec] = []
    with transfer.client() as http:
        try:
            for spec, planned in zip(specs, plans, strict=True):
                described = transfer.upload(http, base, token, spec.job_id, planned) if planned else []
                done.append(dataclasses.replace(spec, files=tuple(described)))
            enqueue(done)
        except FarmError as exc:
            if not (isinstance(exc, FarmUnavailableError) and "may or may not" in str(exc)):
                for spec in specs:
                    transfer.abort_uploads(http, base, token, spec.job_id)
            raise
        for spec in done:
            if spec.files:
                transfer.commit_uploads(http, base, token, spec.job_id)
    return done


def plan(files: Any, config: FarmConfig) -> Planned:
    return [] if not files else transfer.plan_uploads(files, config.limits.max_upload_bytes)


def outputs(connection: Redis, config: FarmConfig, info: JobInfo) -> list[OutputFile]:
    """A finished job's outputs: name, size, sha256 and a signed download URL when farm serve
    runs and this side holds the farm token (else ``url`` is None)."""
    if info.status is not JobStatus.FINISHED or not info.result:
        return []
    base = transfer.serve_url(connection)
    try:
        token = read_token(config) if base else None
    except NoTokenError:
        token = None
    found = []
    for item in info.result.get("files") or []:
        if not isinstance(item, dict):
            continue
        name = file_name(item.get("name"), what="output name")
        url = None
        if base and token:
            url = sign(token, base, quoted("outputs", info.id, name), config.serve.url_ttl)
        found.append(
            OutputFile(name=name, size=int(item.get("size") or 0), sha256=str(item.get("sha256")), url=url)
        )
    return found


def download(
    connection: Redis, config: FarmConfig, info: JobInfo, dest: str | os.PathLike[str]
) -> list[Path]:
    """Fetch every output of a finished job into ``dest`` (checksums verified); returns the paths."""
    if info.status is not JobStatus.FINISHED:
        raise InvalidJobError(f"job {info.id} is {info.status.value}: only finished jobs have outputs")
    target = Path(dest)
    files = outputs(connection, config, info)
    local = Path(str((info.result or {}).get("output_dir") or ""))
    paths = []
    for item in files:
        path = inside(target, item.name)
        if item.url:
            paths.append(transfer.download(item.url, path, item.sha256))
        elif local.is_dir() and (local / item.name).is_file():
            paths.append(_copy(local / item.name, path, item.sha256))
        else:
            raise transfer.TransferError(
                f"cannot fetch {item.name}: no farm serve to ask, or no farm token here "
                f"(${config.serve.token_env})"
            )
    return paths


def _copy(source: Path, path: Path, sha256: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    shutil.copyfile(source, part)
    if sha256_file(part) != sha256:
        part.unlink(missing_ok=True)
        raise transfer.TransferError(f"copy of {path.name}: checksum mismatch")
    os.replace(part, path)
    return path
