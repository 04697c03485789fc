"""``farm serve``: the HTTP server for the farm's store on the render host (uploads with submits,
workers' inputs and outputs from other boxes, signed downloads), the server side of the protocol in
``farm/files/transfer.py``.

- ``server``: ``run_server(config, port=None)`` — uvicorn, ``farm:serve`` published, housekeeping;
- ``app``: the Starlette app and its routes (who may call what);
- ``streams``: request bodies streamed into the store; ``publish``: a winning run's outputs;
- ``housekeeping``: what the store drops (stale partial uploads, inputs of gone jobs, ...).
"""

from .app import create_app
from .server import run_server

__all__ = ["create_app", "run_server"]
