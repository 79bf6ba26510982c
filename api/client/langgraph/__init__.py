"""ctxlog as LangGraph's checkpointer: ``CtxlogSaver`` (``pip install 'ctxlog[langgraph]'``)."""

from __future__ import annotations

from .saver import CtxlogSaver

__all__ = ["CtxlogSaver"]
