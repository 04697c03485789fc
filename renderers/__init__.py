"""The farm's built-in render backends: demo, manim, http, ffmpeg and command.

Each is registered by name in the ``farm.renderers`` entry-point group (``pyproject.toml``) and
implements the contract in ``farm.render``, the only part of the farm imported here (with
``farm.models`` for the error kinds). Helpers shared by backends: ``paths`` (confinement),
``proc`` (subprocesses), ``media`` (ffprobe).
"""
