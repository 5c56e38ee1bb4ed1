"""The ``dfms`` command line: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from dfms.cli.debug import debug_app

app = typer.Typer(
    name="dfms",
    help="DFMS: distributed file storage with content-defined chunking, dedup and replication.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(debug_app, name="debug")


def main() -> None:
    """Entry point of the ``dfms`` console script."""
    app()
