"""Server-side CLI commands: db upgrade, user create, keys, serve --help."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dfms.cli.main import app

runner = CliRunner()
DFMS = str(Path(sys.executable).with_name("dfms"))


def test_help_lists_commands() -> None:
    """`dfms --help` names every command group."""
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("serve", "db", "user", "keys", "debug"):
        assert cmd in res.output
    res = runner.invoke(app, ["serve", "--help"])
    for opt in ("--data-dir", "--config", "--host", "--port", "--nodes", "--replication"):
        assert opt in res.output


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    """`dfms db upgrade` creates the schema (up to the newest migration) and can run again."""
    from alembic.script import ScriptDirectory

    from dfms.metadata.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    for _ in range(2):
        res = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
        assert res.exit_code == 0, res.output
        assert f"revision {head}" in res.output
    assert (tmp_path / "dfms.db").exists()


def test_db_upgrade_postgres(pg_database: str, tmp_path: Path) -> None:
    """`dfms db upgrade --config` applies migrations to PostgreSQL."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database:\n  url: {pg_database}\n")
    res = runner.invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert res.exit_code == 0, res.output


def test_user_create_reads_password_from_stdin(tmp_path: Path) -> None:
    """`dfms user create` takes the password from piped stdin and the account can log in."""
    res = subprocess.run(
        [DFMS, "user", "create", "Admin@Example.com", "--admin", "--data-dir", str(tmp_path)],
        input="adminpass123\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={"DFMS_AUTH__BCRYPT_ROUNDS": "4", "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert "created admin admin@example.com" in res.stdout

    from dfms.config import load_settings
    from dfms.context import AppContext

    async def login() -> str:
        ctx = await AppContext.open(load_settings(overrides={"data_dir": tmp_path}))
        try:
            return (await ctx.users.login("admin@example.com", "adminpass123")).user.role
        finally:
            await ctx.aclose()

    assert asyncio.run(login()) == "admin"
    # A duplicate is a one-line error with exit status 2.
    res = subprocess.run(
        [DFMS, "user", "create", "admin@example.com", "--data-dir", str(tmp_path)],
        input="adminpass123\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={"DFMS_AUTH__BCRYPT_ROUNDS": "4", "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 2 and res.stderr.startswith("error:")


def test_user_create_rejects_short_password(tmp_path: Path) -> None:
    """A password under 8 characters is refused with a clear message."""
    res = runner.invoke(
        app, ["user", "create", "x@example.com", "--data-dir", str(tmp_path)], input="short\n"
    )
    assert res.exit_code == 2
    assert "password" in res.output


def test_bad_config_is_one_line_error(tmp_path: Path) -> None:
    """An invalid config file makes any server command exit 2 naming the key."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: -1\n")
    res = runner.invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert res.exit_code == 2 and "server.port" in res.output


def test_keys_follow_data_dir(tmp_path: Path) -> None:
    """`dfms keys generate/list --data-dir` use the same keys directory as the server."""
    res = runner.invoke(app, ["keys", "generate", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    kid = res.output.split()[1]
    assert (tmp_path / "keys" / f"{kid}.pem").exists()
    res = runner.invoke(app, ["keys", "list", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and kid in res.output and "*" in res.output
