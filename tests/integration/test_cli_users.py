"""``dfms user create|list|set-role|disable|enable``: on a data dir alone, and as separate
processes while a server (an in-process app) uses the same metadata database (SQLite in WAL mode,
and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from dfms.api.app import create_app
from dfms.cli.main import app
from dfms.config import Settings, load_settings
from dfms.context import AppContext
from tests.integration.test_api_auth_accounts import bearer, refresh, role_claim
from tests.unit.auth._auth_helpers import FakeClock

runner = CliRunner()
DFMS = str(Path(sys.executable).with_name("dfms"))
API = "/api/v1"
PASSWORD = "userpass123"


def cli(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["user", *args], input=input)


def assert_one_line_error(res: Any, *words: str) -> None:
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error:") and "\n" not in err, err
    for w in words:
        assert w in err, err


async def can_login(data_dir: Path, email: str) -> str | None:
    """The role the account logs in with, or None when login is refused."""
    from dfms.errors import AuthInvalidCredentials

    ctx = await AppContext.open(load_settings(overrides={"data_dir": data_dir}))
    try:
        return (await ctx.users.login(email, PASSWORD)).user.role
    except AuthInvalidCredentials:
        return None
    finally:
        await ctx.aclose()


def test_user_commands_on_a_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """create, list, set-role, disable and enable change what login sees; errors (unknown email,
    bad role, the last admin) are one line on stderr with exit status 2."""
    monkeypatch.setenv("DFMS_AUTH__BCRYPT_ROUNDS", "4")
    d = str(tmp_path)
    res = cli("create", "Root@Example.com", "--admin", "--data-dir", d, input=f"{PASSWORD}\n")
    assert res.exit_code == 0 and "created admin root@example.com" in res.output, res.output
    res = cli("create", "bob@example.com", "--data-dir", d, input=f"{PASSWORD}\n")
    assert res.exit_code == 0 and "created user bob@example.com" in res.output, res.output
    res = cli("list", "--data-dir", d)
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].split()[:3] == ["EMAIL", "ROLE", "STATE"]
    assert [ln.split()[:3] for ln in lines[1:]] == [
        ["bob@example.com", "user", "active"],
        ["root@example.com", "admin", "active"],
    ]
    res = cli("list", "--query", "BOB", "--data-dir", d)
    assert len(res.output.strip().splitlines()) == 2 and "bob@example.com" in res.output
    res = cli("list", "-q", "nobody", "--data-dir", d)
    assert res.exit_code == 0 and "no accounts matching 'nobody'" in res.output

    res = cli("set-role", "BOB@example.com", "admin", "--data-dir", d)
    assert res.exit_code == 0 and "bob@example.com" in res.output and "role admin" in res.output
    assert asyncio.run(can_login(tmp_path, "bob@example.com")) == "admin"
    res = cli("disable", "bob@example.com", "--data-dir", d)
    assert res.exit_code == 0 and "disabled bob@example.com" in res.output
    assert asyncio.run(can_login(tmp_path, "bob@example.com")) is None
    assert "disabled" in cli("list", "--data-dir", d).output
    res = cli("enable", "bob@example.com", "--data-dir", d)
    assert res.exit_code == 0 and "enabled bob@example.com" in res.output
    assert asyncio.run(can_login(tmp_path, "bob@example.com")) == "admin"
    res = cli("set-role", "bob@example.com", "user", "--data-dir", d)
    assert res.exit_code == 0

    assert_one_line_error(cli("set-role", "bob@example.com", "root", "--data-dir", d), "role")
    assert_one_line_error(
        cli("disable", "nobody@example.com", "--data-dir", d), "nobody@example.com"
    )
    assert_one_line_error(cli("enable", "not an email", "--data-dir", d), "no user")
    assert_one_line_error(cli("set-role", "x@example.com", "admin", "--data-dir", d), "no user")
    # root is the last active admin.
    assert_one_line_error(cli("disable", "root@example.com", "--data-dir", d), "last active admin")
    assert_one_line_error(
        cli("set-role", "root@example.com", "user", "--data-dir", d), "last active admin"
    )
    assert asyncio.run(can_login(tmp_path, "root@example.com")) == "admin"
    # A bad configuration is a one-line error too.
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("auth:\n  active_cache_ttl: -1\n")
    assert_one_line_error(cli("list", "--config", str(cfg)), "auth.active_cache_ttl")


def test_user_help_texts() -> None:
    """`dfms user --help` lists the commands; each documents --data-dir and --config."""
    res = runner.invoke(app, ["user", "--help"])
    assert res.exit_code == 0
    for cmd in ("create", "list", "set-role", "disable", "enable"):
        assert cmd in res.output
        sub = runner.invoke(app, ["user", cmd, "--help"])
        assert sub.exit_code == 0 and "--data-dir" in sub.output and "--config" in sub.output
    assert "auth.active_cache_ttl" in runner.invoke(app, ["user", "disable", "--help"]).output


async def run_cli(config: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        DFMS,
        "user",
        *args,
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(proc.communicate(input.encode() if input else None), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_while_the_server_runs(
    make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> None:
    """While the app serves requests on the same database, `dfms user` processes create an
    account (it can log in at once), disable one (login and refresh fail at once, its access
    token once the server's cached state expires), promote one (admin from its next refresh)
    and list them."""
    settings = make_settings(database={"url": db_url})
    config = tmp_path / "dfms.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(settings.data_dir),
                "database": {"url": db_url},
                "auth": {"bcrypt_rounds": 4},
            }
        )
    )
    ctx = await AppContext.open(settings)
    clock = FakeClock()
    ctx.users.accounts.clock = clock
    try:
        transport = httpx.ASGITransport(app=create_app(ctx=ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post(
                f"{API}/auth/register",
                json={"email": "alice@example.com", "password": PASSWORD, "display_name": "A"},
            )
            assert r.status_code == 201
            alice = r.json()["tokens"]

            cli_done = asyncio.Event()

            async def busy() -> int:
                """Keep the server writing until the CLI process has finished."""
                n = 0
                while not cli_done.is_set():
                    r = await client.post(
                        f"{API}/folders",
                        json={"name": f"f{n}"},
                        headers=bearer(alice["access_token"]),
                    )
                    assert r.status_code == 201, r.text
                    n += 1
                return n

            async def create() -> tuple[int, str, str]:
                try:
                    return await run_cli(config, "create", "new@example.com", input=f"{PASSWORD}\n")
                finally:
                    cli_done.set()

            (code, out, err), writes = await asyncio.gather(create(), busy())
            assert code == 0, err
            assert "created user new@example.com" in out and writes > 1
            r = await client.post(
                f"{API}/auth/login", json={"email": "new@example.com", "password": PASSWORD}
            )
            assert r.status_code == 200
            new = r.json()["tokens"]

            code, out, err = await run_cli(config, "disable", "alice@example.com")
            assert code == 0, err
            r = await client.post(
                f"{API}/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
            )
            assert r.status_code == 401
            assert (await refresh(client, alice["refresh_token"])).status_code == 401
            clock.advance(ctx.users.accounts.ttl)
            r = await client.get(f"{API}/storage/usage", headers=bearer(alice["access_token"]))
            assert r.status_code == 401

            code, out, err = await run_cli(config, "set-role", "new@example.com", "admin")
            assert code == 0, err
            r = await client.get(f"{API}/admin/users", headers=bearer(new["access_token"]))
            assert r.status_code == 403  # its token still says user
            r = await refresh(client, new["refresh_token"])
            assert (
                r.status_code == 200 and role_claim(r.json()["tokens"]["access_token"]) == "admin"
            )
            r = await client.get(
                f"{API}/admin/users", headers=bearer(r.json()["tokens"]["access_token"])
            )
            assert r.status_code == 200 and r.json()["total"] == 2

            code, out, err = await run_cli(config, "list")
            assert code == 0, err
            rows = [ln.split()[:3] for ln in out.strip().splitlines()[1:]]
            assert rows == [
                ["alice@example.com", "user", "disabled"],
                ["new@example.com", "admin", "active"],
            ]
    finally:
        await ctx.aclose()
