"""The event loop ``ctxlog serve`` runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under asyncio's interface) does a server's socket and scheduling work in C, which
is most of what the event loop's thread does per request besides ctxlog's own code: appends
served about 5-7% faster on the same machine (``scripts/bench_api.py``). It is a dependency
wherever it builds (not on Windows, not on PyPy); ``loop = "asyncio"`` keeps the standard
loop, and ``auto`` falls back to it where uvloop is missing.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Literal

from ..settings import SettingsError

Choice = Literal["auto", "uvloop", "asyncio"]


def new_loop(choice: Choice) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop of the chosen kind and its name; SettingsError when ``uvloop`` is
    asked for by name and cannot be imported."""
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise SettingsError(
                    "loop = uvloop, but uvloop is not installed (pip install uvloop)"
                ) from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop, "uvloop"
    return asyncio.new_event_loop(), "asyncio"
