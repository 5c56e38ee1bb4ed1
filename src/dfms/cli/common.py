"""Options shared by every server-side command: they all find the database, keys and nodes the
same way, from ``--data-dir`` (embedded layout) or ``--config FILE``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from dfms.config import Settings, load_settings
from dfms.errors import DFMSError

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (embedded layout). Default ./data.", show_default=False
    ),
]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
]
PortOpt = Annotated[int | None, typer.Option("--port", help="Port to listen on (default 8080).")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML configuration file (see configs/dfms.example.yaml).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_from(data_dir: Path | None, config: Path | None, **overrides: Any) -> Settings:
    """Load settings or exit with a one-line error naming the bad key."""
    merged: dict[str, Any] = dict(overrides)
    if data_dir is not None:
        merged["data_dir"] = data_dir
    try:
        return load_settings(config, overrides=merged)
    except DFMSError as exc:
        fail(exc.message)


def read_secret(prompt: str) -> str:
    """A password from the terminal (asked twice), or the first line of stdin when piped."""
    if sys.stdin is not None and not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = typer.prompt(prompt, hide_input=True)
    second = typer.prompt("Repeat for confirmation", hide_input=True)
    if first != second:
        fail("the two entries do not match")
    return str(first)
