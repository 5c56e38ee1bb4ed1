"""``dfms keys ...``: manage the ES256 keys that sign access and refresh tokens.

The work is done by :mod:`dfms.auth.keys`; these commands only parse options and print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dfms.auth.keys import KEY_SUFFIX, generate_key, list_keys
from dfms.cli.common import ConfigOpt, DataDirOpt, settings_from
from dfms.errors import ConfigError


def _keys_dir(explicit: Path | None, data_dir: Path | None, config: Path | None) -> Path:
    """An explicit directory, else the one the server uses (``--data-dir``/``--config``)."""
    if explicit is not None:
        return explicit
    return settings_from(data_dir, config).keys_dir


keys_app = typer.Typer(
    help=(
        "Manage the ES256 keys that sign tokens. The newest key signs; older keys keep "
        "verifying the tokens they signed until their files are removed."
    ),
    no_args_is_help=True,
)


def _fail(exc: ConfigError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(code=1)


@keys_app.command("generate")
def generate(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Keys directory (default: the server's, from --data-dir/--config)."
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Generate a new P-256 key pair; it signs new tokens after the next restart."""
    out = _keys_dir(out, data_dir, config)
    try:
        kid = generate_key(out)
    except ConfigError as exc:
        raise _fail(exc) from exc
    typer.echo(f"kid:  {kid}")
    typer.echo(f"path: {out / (kid + KEY_SUFFIX)}")


@keys_app.command("list")
def list_(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", "-d", help="Keys directory (default: the server's)."),
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the keys (oldest first) with their creation time; '*' marks the signing key."""
    directory = _keys_dir(directory, data_dir, config)
    try:
        keys = list_keys(directory)
    except ConfigError as exc:
        raise _fail(exc) from exc
    if not keys:
        typer.echo(f"no keys in {directory}; create one with `dfms keys generate`")
        return
    width = max(len(k.kid) for k in keys)
    typer.echo(f"  {'KID':<{width}}  {'CREATED (UTC)':<19}  SIGNING")
    for i, key in enumerate(keys):
        signing = i == len(keys) - 1
        mark, flag = ("*", "yes") if signing else (" ", "")
        created = key.created.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{mark} {key.kid:<{width}}  {created:<19}  {flag}")
