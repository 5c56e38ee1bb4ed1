"""``dfms debug ...``: tools to inspect the storage core from outside."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Final

import typer

from dfms.chunking import ChunkParams, iter_file_chunks
from dfms.errors import ValidationFailed

debug_app = typer.Typer(help="Inspect chunking and storage internals.", no_args_is_help=True)

#: exit status for bad input (missing file, invalid parameters), like a usage error
EXIT_BAD_INPUT: Final = 2

_DEFAULTS: Final = ChunkParams()
_SIZE_RE: Final = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str, option: str) -> int:
    """``"262144"``, ``"256K"``, ``"256KiB"``, ``"1m"`` -> bytes (binary units)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValidationFailed(f"{option}={text!r} is not a size (e.g. 262144, 256K, 1MiB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


@debug_app.command("chunk")
def chunk(
    file: Annotated[Path, typer.Argument(help="File to chunk.", show_default=False)],
    algorithm: Annotated[
        str, typer.Option("--algorithm", "-a", help="fastcdc or rabin.")
    ] = _DEFAULTS.algorithm,
    min_size: Annotated[
        str | None, typer.Option("--min", help="Minimum chunk size (e.g. 256K).")
    ] = None,
    avg_size: Annotated[
        str | None, typer.Option("--avg", help="Average chunk size (e.g. 1M).")
    ] = None,
    max_size: Annotated[
        str | None, typer.Option("--max", help="Maximum chunk size (e.g. 4M).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every line as a JSON object.")
    ] = False,
) -> None:
    """Print the content-defined chunks of FILE: ``offset length sha256`` per chunk, then a
    summary line (chunks, bytes, MB/s with MB = 10^6 bytes)."""
    try:
        params = ChunkParams(
            algorithm=algorithm,  # type: ignore[arg-type]  # validated by ChunkParams
            min_size=_DEFAULTS.min_size if min_size is None else parse_size(min_size, "--min"),
            avg_size=_DEFAULTS.avg_size if avg_size is None else parse_size(avg_size, "--avg"),
            max_size=_DEFAULTS.max_size if max_size is None else parse_size(max_size, "--max"),
        )
    except ValidationFailed as exc:
        raise _fail(exc.message) from None

    count = 0
    total = 0
    started = time.perf_counter()
    try:
        with file.open("rb") as handle:
            for piece in iter_file_chunks(handle, params):
                count += 1
                total += piece.length
                if as_json:
                    line = json.dumps(
                        {"offset": piece.offset, "length": piece.length, "sha256": piece.sha256}
                    )
                else:
                    line = f"{piece.offset} {piece.length} {piece.sha256}"
                typer.echo(line)
    except OSError as exc:
        raise _fail(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    elapsed = time.perf_counter() - started
    mb_per_s = round(total / elapsed / 1e6, 1) if elapsed > 0 else 0.0
    if as_json:
        typer.echo(json.dumps({"chunks": count, "bytes": total, "mb_per_s": mb_per_s}))
    else:
        typer.echo(f"chunks={count} bytes={total} mb_per_s={mb_per_s}")
