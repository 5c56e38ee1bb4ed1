"""``dfms user``: account administration from the command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from dfms.cli.common import ConfigOpt, DataDirOpt, fail, read_secret, settings_from
from dfms.errors import DFMSError

user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)


@user_app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="Email address of the new account.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="Give the account the admin role.")
    ] = False,
    display_name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an account. The password is prompted for, or read from stdin when piped.

    Works while `dfms serve` runs on the same data dir.
    """
    from dfms.context import AppContext

    settings = settings_from(data_dir, config)
    password = read_secret("Password")

    async def run() -> str:
        ctx = await AppContext.open(settings)
        try:
            user = await ctx.users.create_user(
                email, password, display_name, role="admin" if admin else "user"
            )
            return f"created {user.role} {user.email} ({user.id})"
        finally:
            await ctx.aclose()

    try:
        typer.echo(asyncio.run(run()))
    except DFMSError as exc:
        fail(exc.message)
