"""Files across machines: the farm's store on the render host (inputs uploaded with jobs, every
box's outputs), the farm token and signed URLs, and the HTTP client that moves files to and from
``farm serve``. A teammate on another box needs no shared disk: ``Farm.submit(..., files=[...])``
uploads, ``Farm.download(job_id, dest)`` fetches, workers on any box fetch inputs and send outputs.

- ``token``: the farm token (``$FARM_TOKEN`` or ``<data_dir>/token``) and HMAC-signed, expiring URLs;
- ``store``: where the store keeps what, on the render host, and checksums;
- ``transfer``: the HTTP client side (streamed, checksummed, resumable).
"""
