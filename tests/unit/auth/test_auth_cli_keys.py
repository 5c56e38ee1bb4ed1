"""``dfms keys generate`` / ``dfms keys list`` through Typer's test runner."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfms.auth.keys import load_keyring
from dfms.cli.keys import keys_app

runner = CliRunner()


def test_generate_then_list(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    first = runner.invoke(keys_app, ["generate", "--out", str(directory)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(keys_app, ["generate", "-o", str(directory)])
    assert second.exit_code == 0, second.output

    ring = load_keyring(directory)
    old_kid, new_kid = (k.kid for k in ring.keys)
    assert f"kid:  {old_kid}" in first.stdout
    assert f"path: {directory / (old_kid + '.pem')}" in first.stdout
    assert f"kid:  {new_kid}" in second.stdout
    assert stat.S_IMODE((directory / f"{new_kid}.pem").stat().st_mode) == 0o600

    listing = runner.invoke(keys_app, ["list", "--dir", str(directory)])
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["KID", "CREATED", "(UTC)", "SIGNING"]
    assert lines[1].split()[0] == old_kid
    assert lines[1].rstrip().endswith(ring.keys[0].created.strftime("%Y-%m-%d %H:%M:%S"))
    assert lines[2].startswith(f"* {new_kid}")
    assert lines[2].rstrip().endswith("yes")


def test_default_directory_is_data_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(keys_app, ["generate"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "data" / "keys").glob("*.pem"))) == 1
    listing = runner.invoke(keys_app, ["list"])
    assert listing.exit_code == 0
    assert listing.stdout.count("yes") == 1


def test_list_empty_directory(tmp_path: Path) -> None:
    result = runner.invoke(keys_app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "no keys in" in result.stdout


def test_list_missing_directory_fails(tmp_path: Path) -> None:
    result = runner.invoke(keys_app, ["list", "--dir", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "does not exist" in result.stderr


def test_list_reports_the_invalid_file(tmp_path: Path) -> None:
    (tmp_path / "broken.pem").write_text("garbage")
    result = runner.invoke(keys_app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "broken.pem" in result.stderr


def test_generate_into_an_unusable_path_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(keys_app, ["generate", "--out", str(blocker / "keys")])
    assert result.exit_code == 1
    assert "cannot create keys directory" in result.stderr


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(keys_app, [])
    assert "generate" in result.output
    assert "list" in result.output
