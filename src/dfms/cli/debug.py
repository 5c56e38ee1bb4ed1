"""``dfms debug ...``: tools to inspect the storage core from outside."""

from __future__ import annotations

import typer

debug_app = typer.Typer(help="Inspect chunking and storage internals.", no_args_is_help=True)
