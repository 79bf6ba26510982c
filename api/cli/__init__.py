"""The ``ctxlog`` command: the group and ``serve``/``mcp`` in ``main``, one module per family of
commands (``inspect``: history, replay, show; ``audit``: audit, stats; ``ops``: verify, export,
import, backup, rebuild, erase), and what they share (``support``, ``output``, ``render``)."""

from .main import cli, main

__all__ = ["cli", "main"]
