"""``dfms serve``: the all-in-one server (gateway + embedded storage nodes)."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from dfms.cli.common import ConfigOpt, DataDirOpt, fail, settings_from
from dfms.config import Settings
from dfms.errors import DFMSError


def _prepare(settings: Settings) -> None:
    """Apply migrations and create keys before workers start (so they never race on it)."""
    from dfms.context import AppContext

    async def run() -> None:
        ctx = await AppContext.open(settings)
        await ctx.aclose()

    asyncio.run(run())


def run_server(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    from dfms.api.app import SETTINGS_ENV, settings_to_env
    from dfms.observability import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    try:
        _prepare(settings)
    except DFMSError as exc:
        fail(exc.message)
    os.environ[SETTINGS_ENV] = settings_to_env(settings)
    host, port = settings.server.host, settings.server.port
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"DFMS serving on http://{shown}:{port}  (data: {settings.data_dir}, "
        f"nodes: {len(settings.node_list())}, replication: {settings.storage.replication})",
        err=True,
    )
    Granian(
        "dfms.api.app:app_from_env",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        log_enabled=True,
        log_access=False,
    ).serve()


def serve(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8080).")] = None,
    nodes: Annotated[
        int | None, typer.Option("--nodes", help="Number of local storage node directories.")
    ] = None,
    replication: Annotated[
        int | None, typer.Option("--replication", help="Replication factor (<= nodes).")
    ] = None,
) -> None:
    """Run everything in one process: API gateway, embedded storage node(s), SQLite metadata.

    Migrations are applied and signing keys created on first start. Stops cleanly on
    SIGINT/SIGTERM.
    """
    settings = settings_from(
        data_dir,
        config,
        server={"host": host, "port": port},
        storage={"node_count": nodes, "replication": replication},
    )
    run_server(settings)
