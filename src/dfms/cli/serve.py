"""``dfms serve`` (the all-in-one server: gateway + embedded storage nodes + GC schedule) and
``dfms gateway`` (the HTTP API alone, several of which may share one PostgreSQL database)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from dfms.cli.common import ConfigOpt, DataDirOpt, HostOpt, PortOpt, fail, settings_from
from dfms.config import ROLE_ENV, SETTINGS_ENV, ServerRole, Settings, settings_to_env


def _prepare(settings: Settings, role: ServerRole) -> None:
    """``serve``: apply migrations and create keys before the workers start (so they never
    race on it); ``gateway``: check that the schema is current and a key exists (nothing is
    changed). Done by ``python -m dfms.cli.prepare`` in a child process, so that the server's
    supervisor process never imports the application (~50 MiB it would hold for nothing)."""
    done = subprocess.run(
        [sys.executable, "-m", "dfms.cli.prepare", role],
        input=settings_to_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()
        fail(message[-1] if message else f"start-up checks failed (exit {done.returncode})")


#: glibc's M_ARENA_MAX parameter (mallopt). Each thread that meets contention gets its own malloc
#: arena (up to 8 per core), and every arena keeps freed memory: with the upload path's many
#: short-lived buffers on the event loop, chunking, store and flusher threads, that raised a
#: worker's peak RSS by tens of MiB from run to run. Two arenas hold it steady.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for this process and the workers it forks (no-op elsewhere,
    or when the operator set ``MALLOC_ARENA_MAX`` themselves). True if applied."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc
        return False


def run_server(settings: Settings, role: ServerRole = "serve", workers: int = 1) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    from dfms.observability import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    limit_malloc_arenas()
    _prepare(settings, role)
    os.environ[SETTINGS_ENV] = settings_to_env(settings)
    os.environ[ROLE_ENV] = role
    host, port = settings.server.host, settings.server.port
    shown = f"[{host}]" if ":" in host else host
    what = "DFMS serving" if role == "serve" else f"DFMS gateway ({workers} worker(s))"
    typer.echo(
        f"{what} on http://{shown}:{port}  (data: {settings.data_dir}, "
        f"nodes: {len(settings.node_list())}, replication: {settings.storage.replication})",
        err=True,
    )
    from granian.http import HTTP1Settings

    # granian's own header buffer cap (~408 KiB) stays: it is also its body read size, which
    # matters for upload throughput; the app refuses headers over server.max_header_bytes
    http1 = HTTP1Settings(header_read_timeout=int(settings.server.header_timeout * 1000))
    Granian(
        "dfms.api.app:app_from_env",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        http1_settings=http1,
        log_enabled=True,
        log_access=False,
    ).serve()


def serve(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
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


def gateway(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Worker processes (default 1).")
    ] = 1,
) -> None:
    """Run the HTTP API gateway alone: no GC schedule, no migrations, no key creation.

    Several gateways (on one or several machines) can share one PostgreSQL database, the same
    storage nodes and signing keys, and one Redis for rate limits. Before the first start run
    `dfms db upgrade` and `dfms keys generate` with the same --config; the gateway refuses to
    start on an outdated schema or without a key. GC runs elsewhere (`dfms admin gc`, or one
    `dfms serve`). Stops cleanly on SIGINT/SIGTERM.
    """
    settings = settings_from(data_dir, config, server={"host": host, "port": port})
    run_server(settings, role="gateway", workers=workers)
