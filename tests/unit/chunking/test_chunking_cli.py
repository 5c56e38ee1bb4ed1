"""``dfms debug chunk``: one line per chunk plus a summary, JSON mode, clean errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dfms.chunking import ChunkParams
from dfms.cli.debug import debug_app, parse_size
from dfms.errors import ValidationFailed

from ._data import boundaries, random_bytes

runner = CliRunner()
# mounted the way dfms.cli.main mounts it, without importing the other command groups
cli = typer.Typer()
cli.add_typer(debug_app, name="debug")
DATA = random_bytes(3 << 20, 41)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


def test_prints_offset_length_sha256_per_chunk_then_a_summary(data_file: Path) -> None:
    """Each chunk is 'offset length sha256'; the last line counts chunks, bytes and MB/s."""
    result = runner.invoke(cli, ["debug", "chunk", str(data_file)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    expected = boundaries(DATA, ChunkParams())
    assert [tuple(line.split()) for line in lines[:-1]] == [
        (str(o), str(n), h) for o, n, h in expected
    ]
    summary = dict(field.split("=") for field in lines[-1].split())
    assert summary["chunks"] == str(len(expected))
    assert summary["bytes"] == str(len(DATA))
    assert float(summary["mb_per_s"]) >= 0


def test_json_mode_prints_one_object_per_line_including_the_summary(data_file: Path) -> None:
    """--json: every line is a JSON object; chunk lines, then {"chunks","bytes","mb_per_s"}."""
    args = ["chunk", str(data_file), "--json", "--algorithm", "rabin"]
    args += ["--min", "16K", "--avg", "64KiB", "--max", "262144"]
    result = runner.invoke(cli, ["debug", *args])
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    params = ChunkParams("rabin", 16 << 10, 64 << 10, 256 << 10)
    assert objects[:-1] == [
        {"offset": o, "length": n, "sha256": h} for o, n, h in boundaries(DATA, params)
    ]
    assert set(objects[-1]) == {"chunks", "bytes", "mb_per_s"}
    assert objects[-1]["chunks"] == len(objects) - 1
    assert objects[-1]["bytes"] == len(DATA)


def test_empty_file_has_no_chunk_lines(tmp_path: Path) -> None:
    """An empty file prints only the summary, with zero chunks."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    result = runner.invoke(cli, ["debug", "chunk", str(path), "--json"])
    assert result.exit_code == 0
    assert [json.loads(line)["chunks"] for line in result.stdout.splitlines()] == [0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.bin"], "cannot read"),
        (["."], "cannot read"),
        (["DATA", "--min", "2M"], "min_size=2097152"),
        (["DATA", "--algorithm", "buzhash"], "algorithm='buzhash'"),
        (["DATA", "--avg", "lots"], "--avg='lots' is not a size"),
        (["DATA", "--min", "1M", "--avg", "512K"], "must be smaller than avg_size"),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_status_2(
    data_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    """A missing/unreadable file or invalid params: one line on stderr, exit 2, no traceback."""
    target = {"DATA": str(data_file), ".": str(tmp_path)}.get(args[0], str(tmp_path / args[0]))
    result = runner.invoke(cli, ["debug", "chunk", target, *args[1:]])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("text", "value"),
    [("262144", 262144), ("256K", 262144), ("256KiB", 262144), ("1m", 1 << 20), ("2 GB", 2 << 30)],
)
def test_sizes_accept_binary_unit_suffixes(text: str, value: int) -> None:
    """--min/--avg/--max take plain bytes or K/M/G (binary) suffixes."""
    assert parse_size(text, "--min") == value


def test_a_malformed_size_is_a_validation_error() -> None:
    """A malformed size names the option."""
    with pytest.raises(ValidationFailed, match="--max='4 MB!'"):
        parse_size("4 MB!", "--max")


def test_real_subprocess_dfms_debug_chunk(data_file: Path, tmp_path: Path) -> None:
    """The installed console script works end to end, and fails cleanly on a missing file."""
    dfms = Path(sys.executable).parent / "dfms"
    if not dfms.exists():  # pragma: no cover - the dev install always has it
        pytest.skip("dfms console script not installed")
    ok = subprocess.run(
        [str(dfms), "debug", "chunk", str(data_file), "--algorithm", "rabin"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    expected = boundaries(DATA, ChunkParams("rabin"))
    assert [line.split()[2] for line in lines[:-1]] == [h for _, _, h in expected]
    assert lines[-1].startswith(f"chunks={len(expected)} bytes={len(DATA)} ")

    bad = subprocess.run(
        [str(dfms), "debug", "chunk", str(tmp_path / "nope.bin")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr
