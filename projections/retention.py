"""Retention: per-tenant policies that delete contexts idle too long, and can erase them.

Placeholder: the policy type only (filled in below).
"""

from __future__ import annotations

import msgspec


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Contexts of ``tenant`` ("" for none: an open server) idle longer than ``idle_days``
    are deleted; with ``erase``, their content is also made unreadable (crypto-shredding)."""

    tenant: str
    idle_days: float
    erase: bool = False
