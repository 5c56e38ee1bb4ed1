"""``dfms user``: account administration from the command line.

Every command opens the metadata database the server uses (``--data-dir`` or ``--config``) and
works while ``dfms serve`` runs on it (SQLite in WAL mode, or PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from dfms.cli.common import ConfigOpt, DataDirOpt, fail, read_secret, settings_from
from dfms.errors import DFMSError

if TYPE_CHECKING:
    from dfms.context import AppContext
    from dfms.services.admin import AccountView

T = TypeVar("T")

user_app = typer.Typer(
    help=(
        "Manage user accounts: create, list, set-role, disable, enable. Roles: 'user' (the "
        "default) and 'admin' (may use the admin API: accounts and cluster statistics, never "
        "other users' files). Safe while `dfms serve` runs on the same data."
    ),
    no_args_is_help=True,
)


def _run(
    data_dir: Path | None, config: Path | None, work: Callable[[AppContext], Awaitable[T]]
) -> T:
    """Open the application context, run ``work``, close it; exit 2 with one line on errors."""
    from dfms.context import AppContext

    settings = settings_from(data_dir, config)

    async def run() -> T:
        ctx = await AppContext.open(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.aclose()

    try:
        return asyncio.run(run())
    except DFMSError as exc:
        fail(exc.message)


def _describe(u: AccountView) -> str:
    state = "active" if u.is_active else "disabled"
    return f"{u.email} ({u.id}): role {u.role}, {state}"


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
    """Create an account (role 'user', or 'admin' with --admin).

    The password (8 to 72 bytes) is prompted for, or read from stdin when piped.
    Works while `dfms serve` runs on the same data dir.
    """
    settings_from(data_dir, config)  # a bad configuration fails before the password prompt
    password = read_secret("Password")

    async def work(ctx: AppContext) -> str:
        user = await ctx.users.create_user(
            email, password, display_name, role="admin" if admin else "user"
        )
        return f"created {user.role} {user.email} ({user.id})"

    typer.echo(_run(data_dir, config, work))


@user_app.command("set-role")
def set_role(
    email: Annotated[str, typer.Argument(help="Email address of the account.")],
    role: Annotated[str, typer.Argument(help="admin or user.", metavar="admin|user")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Give an account the role 'admin' or 'user'.

    Its tokens carry the new role from its next refresh (within one access-token
    lifetime, 15 min by default); a demotion also takes effect within
    auth.active_cache_ttl seconds (30). Demoting the last active admin is refused.
    """
    if role not in ("admin", "user"):
        fail(f"role must be 'admin' or 'user', not {role!r}")

    async def work(ctx: AppContext) -> AccountView:
        return await ctx.admin.update_user_by_email(email, role=role)

    typer.echo(f"updated {_describe(_run(data_dir, config, work))}")


@user_app.command("disable")
def disable(
    email: Annotated[str, typer.Argument(help="Email address of the account.")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Disable an account (its files are kept).

    Login and refresh fail at once (its refresh tokens are revoked); its access
    tokens stop working within auth.active_cache_ttl seconds (30 by default).
    Disabling the last active admin is refused.
    """

    async def work(ctx: AppContext) -> AccountView:
        return await ctx.admin.update_user_by_email(email, is_active=False)

    typer.echo(f"disabled {_describe(_run(data_dir, config, work))}")


@user_app.command("enable")
def enable(
    email: Annotated[str, typer.Argument(help="Email address of the account.")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Enable a disabled account again.

    It logs in anew: the sessions revoked when it was disabled stay revoked.
    """

    async def work(ctx: AppContext) -> AccountView:
        return await ctx.admin.update_user_by_email(email, is_active=True)

    typer.echo(f"enabled {_describe(_run(data_dir, config, work))}")


@user_app.command("list")
def list_(
    query: Annotated[
        str | None,
        typer.Option("--query", "-q", help="Only accounts whose email contains this text."),
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List accounts ordered by email.

    Columns: email, role, state (active or disabled), used and quota bytes, id.
    """

    async def work(ctx: AppContext) -> list[AccountView]:
        out: list[AccountView] = []
        page = 1
        while True:
            p = await ctx.admin.list_users(query, page, 500)
            out.extend(p.items)
            if page >= p.total_pages:
                return out
            page += 1

    users = _run(data_dir, config, work)
    if not users:
        typer.echo("no accounts" + (f" matching {query!r}" if query else ""))
        return
    width = max(len("EMAIL"), *(len(u.email) for u in users))
    typer.echo(f"{'EMAIL':<{width}}  {'ROLE':<5}  {'STATE':<8}  {'USED':>14}  {'QUOTA':>14}  ID")
    for u in users:
        state = "active" if u.is_active else "disabled"
        typer.echo(
            f"{u.email:<{width}}  {u.role:<5}  {state:<8}  {u.used:>14}  {u.quota:>14}  {u.id}"
        )
