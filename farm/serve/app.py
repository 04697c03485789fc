"""The HTTP face of the farm's store (``farm serve``): the Starlette app, one route per verb of
the protocol in ``farm/files/transfer.py`` (its module docstring is the reference), and who may
call each: the farm token for uploads, inputs and workers' outputs, a signed URL for downloads,
nobody for ``/healthz``. ``server.py`` runs it; ``streams.py`` receives bodies; ``publish.py``
publishes a winning run's outputs. Every path is checked with ``store.file_name``/``store.inside``.
"""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyio import to_thread
from redis import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .. import keys
from ..config import FarmConfig
from ..errors import InvalidJobError
from ..files import store
from ..files import token as tokens
from ..records import JobRecord, read_job
from ..submit import JOB_ID_RE
from . import publish
from .metrics import CONTENT_TYPE, exposition
from .streams import INCOMING, KeyedLocks, Received, place, receive, refuse, remove_tree, used_bytes

log = logging.getLogger("farm.serve")

RUN_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
SHA_HEADER = "x-farm-sha256"


class _File(FileResponse):
    chunk_size = store.CHUNK  # fewer, larger reads: the file is read off the event loop per chunk


class StoreApp:
    """The routes, and what they share: the config, Redis, the farm token, per-key locks."""

    def __init__(self, config: FarmConfig, connection: Redis, token: str) -> None:
        self.config = config
        self.connection = connection
        self.token = token
        self.locks = KeyedLocks()
        self._uploads = config.data_dir / store.UPLOADS

    # -- checks ----------------------------------------------------------------------------------

    async def _authorized(self, request: Request) -> None:
        if not tokens.bearer_ok(self.token, request.headers.get("authorization")):
            raise await refuse(request, 401, "the farm token is required")

    async def _job_id(self, request: Request) -> str:
        job_id = str(request.path_params["job_id"])
        if not JOB_ID_RE.fullmatch(job_id):
            raise await refuse(request, 400, "bad job id")
        return job_id

    async def _run_token(self, request: Request) -> str:
        run_token = str(request.path_params["run_token"])
        if not RUN_TOKEN_RE.fullmatch(run_token):
            raise await refuse(request, 400, "bad run token")
        return run_token

    async def _name(self, request: Request) -> str:
        try:
            return publish.plain_name(request.path_params["name"])
        except InvalidJobError as exc:
            raise await refuse(request, 400, str(exc)) from None

    async def _sha256(self, request: Request) -> str:
        value = request.headers.get(SHA_HEADER, "").strip().lower()
        if not SHA256_RE.fullmatch(value):
            raise await refuse(request, 400, "X-Farm-Sha256 must be the file's sha256 (64 hex digits)")
        return value

    async def _inside(self, request: Request, base: Path, name: str) -> Path:
        """``base/name``, refused unless it stays in ``base`` and in the store's part holding it
        (links followed: a linked job dir cannot lead out of the store either)."""
        root = self.config.output_dir if base.is_relative_to(self.config.output_dir) else self._uploads
        try:
            path = await to_thread.run_sync(store.inside, base, name)
            if not await to_thread.run_sync(lambda: path.resolve().is_relative_to(root.resolve())):
                raise InvalidJobError(f"file name leaves the store: {name!r}")
            return path
        except InvalidJobError as exc:
            raise await refuse(request, 400, str(exc)) from None

    def _signed(self, request: Request) -> None:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1")
        query = request.query_params
        if not tokens.verify(self.token, "GET", path, query.get("expires"), query.get("sig")):
            raise HTTPException(403, "a valid, unexpired signature is required")

    async def _redis(self, call: Callable[..., Any], *args: Any) -> Any:
        return await to_thread.run_sync(call, *args)

    async def _job(self, job_id: str, *fields: str) -> tuple[bool, JobRecord]:
        """Whether the job exists, and those fields of its hash as a record (never raises on
        what the hash holds)."""

        def read() -> tuple[bool, JobRecord]:
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.exists(keys.job(job_id))
                pipe.hmget(keys.job(job_id), *fields)
                exists, values = pipe.execute()
            raw = {f.encode(): v for f, v in zip(fields, values, strict=True) if v is not None}
            return bool(exists), read_job(job_id, raw)

        return await to_thread.run_sync(read)

    # -- uploads (a submit's inputs) -----------------------------------------------------------------

    def _uploads_incoming(self) -> Path:
        return self.config.data_dir / store.UPLOADS / store.PARTIAL / INCOMING

    async def put_upload(self, request: Request) -> Response:
        await self._authorized(request)
        job_id, name = await self._job_id(request), await self._name(request)
        expected = await self._sha256(request)
        partial = store.uploads_partial(self.config, job_id)
        async with self.locks.hold("uploads:" + job_id):
            if store.uploads_dir(self.config, job_id).exists():
                raise await refuse(request, 409, f"job {job_id}: its uploads were already committed")
            target = await self._inside(request, partial, name)
            room = self.config.limits.max_upload_bytes - await to_thread.run_sync(used_bytes, partial, target)
            declared = request.headers.get("content-length", "")
            too_large = (
                f"job {job_id}: uploads over limits.max_upload_bytes ({self.config.limits.max_upload_bytes})"
            )
            if room < 0 or (declared.isdigit() and int(declared) > room):
                raise await refuse(request, 413, too_large)
            received = await receive(request, self._uploads_incoming(), room, too_large)
            await self._keep(received, expected, target, name)
        log.info("upload %s of job %s: %d bytes", name, job_id, received.size)
        return JSONResponse({"name": name, "size": received.size, "sha256": received.sha256}, 201)

    async def _keep(self, received: Received, expected: str, target: Path, name: str) -> None:
        try:
            if received.sha256 != expected:
                raise HTTPException(422, f"{name}: sha256 mismatch: {received.sha256} != {expected}")
            await to_thread.run_sync(place, received, target)
        finally:
            received.path.unlink(missing_ok=True)

    async def commit_uploads(self, request: Request) -> Response:
        await self._authorized(request)
        job_id = await self._job_id(request)
        async with self.locks.hold("uploads:" + job_id):
            return await self._commit_uploads(job_id)

    async def _commit_uploads(self, job_id: str) -> Response:
        committed = store.uploads_dir(self.config, job_id)
        if committed.exists():
            return PlainTextResponse("committed")
        if not store.uploads_partial(self.config, job_id).is_dir():
            raise HTTPException(404, f"job {job_id}: nothing was uploaded")
        if not await self._redis(self.connection.exists, keys.job(job_id)):
            raise HTTPException(409, f"job {job_id}: no such job")
        await to_thread.run_sync(store.uploads_partial(self.config, job_id).rename, committed)
        log.info("committed the uploads of job %s", job_id)
        return PlainTextResponse("committed")

    async def abort_uploads(self, request: Request) -> Response:
        await self._authorized(request)
        job_id = await self._job_id(request)
        async with self.locks.hold("uploads:" + job_id):
            await to_thread.run_sync(remove_tree, store.uploads_partial(self.config, job_id))
        return Response(status_code=204)

    async def get_input(self, request: Request) -> Response:
        await self._authorized(request)
        job_id, name = await self._job_id(request), await self._name(request)
        committed = store.uploads_dir(self.config, job_id)
        if not committed.exists() and store.uploads_partial(self.config, job_id).is_dir():
            # The submitter may have died between writing the job and committing its files.
            exists, record = await self._job(job_id, keys.F_FILES)
            if exists and name in {str(item.get("name")) for item in record.files}:
                async with self.locks.hold("uploads:" + job_id):
                    await self._commit_uploads(job_id)
        return await self._file(request, committed, name)

    async def _file(self, request: Request, base: Path, name: str) -> Response:
        path = await self._inside(request, base, name)
        try:
            info = await to_thread.run_sync(path.lstat)
        except OSError:
            raise HTTPException(404, f"no file {name}") from None
        if not stat.S_ISREG(info.st_mode):
            raise HTTPException(404, f"no file {name}")
        return _File(
            path,
            stat_result=info,
            media_type="application/octet-stream",
            filename=Path(name).name,
            headers={"X-Content-Type-Options": "nosniff"},
        )

    # -- outputs sent by workers on other boxes --------------------------------------------------

    def _outputs_incoming(self) -> Path:
        return self.config.output_dir / store.PARTIAL / INCOMING

    async def _owns(self, job_id: str, run_token: str) -> bool:
        owner = await self._redis(self.connection.get, keys.owner(job_id))
        return bool(owner == run_token.encode())

    async def put_output(self, request: Request) -> Response:
        await self._authorized(request)
        job_id, run_token = await self._job_id(request), await self._run_token(request)
        name, expected = await self._name(request), await self._sha256(request)
        if not await self._owns(job_id, run_token):
            raise await refuse(request, 409, f"job {job_id}: run {run_token[:8]} no longer owns the job")
        limit = self.config.limits.max_output_bytes
        declared = request.headers.get("content-length", "")
        too_large = f"{name}: over limits.max_output_bytes ({limit})"
        if declared.isdigit() and int(declared) > limit:
            raise await refuse(request, 413, too_large)
        staging = store.staging_dir(self.config, job_id, run_token)
        async with self.locks.hold(f"outputs:{job_id}.{run_token}"):
            target = await self._inside(request, staging, name)
            received = await receive(request, self._outputs_incoming(), limit, too_large)
            if not await self._owns(job_id, run_token):
                received.path.unlink(missing_ok=True)
                raise HTTPException(409, f"job {job_id}: run {run_token[:8]} no longer owns the job")
            await self._keep(received, expected, target, name)
        log.info("output %s of job %s (run %s): %d bytes", name, job_id, run_token[:8], received.size)
        return JSONResponse({"name": name, "size": received.size, "sha256": received.sha256}, 201)

    async def commit_outputs(self, request: Request) -> Response:
        await self._authorized(request)
        job_id, run_token = await self._job_id(request), await self._run_token(request)
        async with self.locks.hold(f"outputs:{job_id}.{run_token}"):
            outcome = await to_thread.run_sync(
                publish.publish_run, self.connection, self.config, job_id, run_token
            )
        if outcome.status >= 300:
            raise HTTPException(outcome.status, outcome.message)
        return JSONResponse({"output_dir": outcome.output_dir, "outputs": outcome.outputs})

    async def discard_outputs(self, request: Request) -> Response:
        await self._authorized(request)
        job_id, run_token = await self._job_id(request), await self._run_token(request)
        async with self.locks.hold(f"outputs:{job_id}.{run_token}"):
            await to_thread.run_sync(remove_tree, store.staging_dir(self.config, job_id, run_token))
        return Response(status_code=204)

    # -- downloads (signed URLs) -------------------------------------------------------------------

    async def get_output(self, request: Request) -> Response:
        self._signed(request)
        job_id = await self._job_id(request)
        exists, record = await self._job(job_id, keys.F_RESULT)
        if request.path_params["name"] == "":
            if not exists:
                raise HTTPException(404, f"no job {job_id}")
            return JSONResponse(_listing(record.result))
        name = await self._name(request)
        recorded_here = str(publish.published_dir(self.config, job_id, record.result)) == (
            record.result or {}
        ).get("output_dir")
        if exists and not recorded_here and await self._publish_winner(job_id):
            _, record = await self._job(job_id, keys.F_RESULT)
        return await self._file(request, publish.published_dir(self.config, job_id, record.result), name)

    async def _publish_winner(self, job_id: str) -> bool:
        """A run on another box records its end, then asks the store to publish (``commit``): a
        download in between would find nothing. Until then its result names no dir of this store,
        so publish the recorded winner's staged files now (what its commit would do; a later
        commit finds them published). Runs of this host always name their dir here: untouched."""
        status, ended_by = await self._redis(
            self.connection.hmget, keys.job(job_id), keys.RQ_STATUS, keys.F_ENDED_BY
        )
        run_token = ended_by.decode("ascii", "replace") if ended_by else ""
        if status != b"finished" or not RUN_TOKEN_RE.fullmatch(run_token):
            return False
        async with self.locks.hold(f"outputs:{job_id}.{run_token}"):
            outcome = await to_thread.run_sync(
                publish.publish_run, self.connection, self.config, job_id, run_token
            )
        return outcome.status < 300


def _listing(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    files = (result or {}).get("files")
    listed = []
    for item in files if isinstance(files, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            listed.append({"name": item["name"], "size": item.get("size"), "sha256": item.get("sha256")})
    return listed


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("farm serve: Redis: %s", exc)
    return PlainTextResponse("the farm's Redis is unavailable", status_code=503)


async def _bad_input(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(str(exc).splitlines()[0][:300], status_code=400)


def _loopback(request: Request) -> bool:
    return tokens.is_loopback(request.client.host if request.client else "")


def metrics_route(routes_of: StoreApp) -> Callable[[Request], Any]:
    """``GET /metrics``: Prometheus' scrape. Open on loopback; elsewhere the farm token is
    required (Prometheus sends it with ``authorization: {credentials: ...}``)."""

    async def metrics(request: Request) -> Response:
        if not _loopback(request):
            await routes_of._authorized(request)
        body = await routes_of._redis(exposition, routes_of.connection, routes_of.config)
        return Response(body, media_type=CONTENT_TYPE)

    return metrics


def create_app(config: FarmConfig, connection: Redis, token: str) -> Starlette:
    """The store's app. Nothing is listed or served without the token or a valid signature."""
    routes_of = StoreApp(config, connection, token)
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_route(routes_of), methods=["GET"]),
        Route("/uploads/{job_id}/commit", routes_of.commit_uploads, methods=["POST"]),
        Route("/uploads/{job_id}", routes_of.abort_uploads, methods=["DELETE"]),
        Route("/uploads/{job_id}/{name:path}", routes_of.put_upload, methods=["PUT"]),
        Route("/inputs/{job_id}/{name:path}", routes_of.get_input, methods=["GET"]),
        Route("/outputs/{job_id}/{run_token}/commit", routes_of.commit_outputs, methods=["POST"]),
        Route("/outputs/{job_id}/{run_token}", routes_of.discard_outputs, methods=["DELETE"]),
        Route("/outputs/{job_id}/{run_token}/{name:path}", routes_of.put_output, methods=["PUT"]),
        Route("/outputs/{job_id}/{name:path}", routes_of.get_output, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={RedisError: _unavailable, InvalidJobError: _bad_input},
    )
    app.router.redirect_slashes = False  # a redirect would answer for paths nobody signed
    return app
