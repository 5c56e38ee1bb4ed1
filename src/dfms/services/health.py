"""Readiness: the metadata database answers and enough storage nodes answer to take writes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from dfms.errors import DFMSError

if TYPE_CHECKING:
    from dfms.context import AppContext


async def readiness(ctx: AppContext, probe_timeout: float = 2.0) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ctx.db.ping(), probe_timeout)
        checks["database"] = "ok"
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    healthy = 0
    for node_id, store in ctx.stores.items():
        try:
            await asyncio.wait_for(store.stat(), probe_timeout)
            checks[f"node:{node_id}"] = "ok"
            healthy += 1
        except (DFMSError, OSError, TimeoutError) as exc:
            checks[f"node:{node_id}"] = f"error: {type(exc).__name__}"
    quorum = ctx.settings.storage.effective_write_quorum
    checks["storage"] = "ok" if healthy >= quorum else f"only {healthy} of {quorum} nodes"
    return all(v == "ok" for v in checks.values()), checks
