"""The ``dfms`` command line: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from dfms.cli.admin import admin_app
from dfms.cli.db import db_app
from dfms.cli.debug import debug_app
from dfms.cli.keys import keys_app
from dfms.cli.serve import gateway, serve
from dfms.cli.user import user_app

app = typer.Typer(
    name="dfms",
    help="DFMS: distributed file storage with content-defined chunking, dedup and replication.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
app.command("serve")(serve)
app.command("gateway")(gateway)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(keys_app, name="keys")
app.add_typer(debug_app, name="debug")
app.add_typer(admin_app, name="admin")


def main() -> None:
    """Entry point of the ``dfms`` console script."""
    app()
