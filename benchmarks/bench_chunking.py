"""Chunking throughput, with the hashlib SHA-256 baseline measured on the same bytes, same run.

    python benchmarks/bench_chunking.py [--size-mib 256] [--repeat 3] [--piece-kib 64] [--json]

Reports MB/s (MB = 10^6 bytes; best of ``--repeat`` runs) for:

- ``sha256``: hashlib SHA-256 of the whole buffer (the baseline);
- ``fastcdc cut`` / ``rabin cut``: cutting the whole buffer at once, no hashing;
- ``fastcdc stream cut``: the streaming core fed ``--piece-kib`` pieces, no hashing;
- ``fastcdc+sha256 sync``: the streaming core fed ``--piece-kib`` pieces, one thread, per-chunk
  SHA-256 only;
- ``fastcdc+sha256 parallel buffer``: ``iter_buffer_chunks`` on the whole buffer: one thread cuts
  zero-copy views while the other hashes (the issue's "hash chunk k while cutting chunk k+1");
- ``fastcdc+sha256 parallel file``: ``iter_file_chunks`` on a file object (``io.BytesIO``) read in
  4 MiB blocks: the same two threads, plus the reads and the streaming core's window joins;
- ``fastcdc+sha256 pipeline``: ``ChunkPipeline``, the real upload path: per-chunk SHA-256 and
  the whole-stream SHA-256, cutting and hashing in threads;
- ``fastcdc+sha256 pipeline, no file hash``: the same without the whole-stream SHA-256;
- the same three for rabin;

and the ratios of the fastcdc two-thread figures to SHA-256 alone. The input is random bytes handed
to the pipeline as ``bytes`` pieces (as an ASGI server delivers a request body).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable

from dfms.chunking import (
    ChunkParams,
    ChunkPipeline,
    iter_buffer_chunks,
    iter_file_chunks,
    make_chunker,
)
from dfms.chunking.core import Cutter, hash_span, make_cutter

MB = 1e6


def best_rate(fn: Callable[[], object], size: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return size / best / MB


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256, help="input size in MiB (default 256)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    ap.add_argument("--piece-kib", type=int, default=64, help="pipeline/stream piece size")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args(argv)

    size = args.size_mib << 20
    data = os.urandom(size)
    piece = args.piece_kib << 10
    pieces = [data[pos : pos + piece] for pos in range(0, size, piece)]
    expected_sha = hashlib.sha256(data).hexdigest()
    results: dict[str, float] = {}

    def record(name: str, fn: Callable[[], object]) -> None:
        results[name] = best_rate(fn, size, args.repeat)
        if not args.json:
            print(f"{name:<42} {results[name]:8.0f} MB/s", flush=True)

    record("sha256", lambda: hashlib.sha256(data).hexdigest())

    for algorithm in ("fastcdc", "rabin"):
        params = ChunkParams(algorithm)  # type: ignore[arg-type]
        cutter = make_cutter(params)

        def whole_cut(cutter: Cutter = cutter) -> None:
            cutter.cut(data, True)

        record(f"{algorithm} cut", whole_cut)

        def stream_cut(params: ChunkParams = params) -> None:
            chunker = make_chunker(params)
            for p in pieces:
                chunker.cut((p,))
            chunker.cut_final()

        record(f"{algorithm} stream cut", stream_cut)

        def sync_hashed(params: ChunkParams = params) -> None:
            chunker = make_chunker(params)
            for p in pieces:
                for span in chunker.cut((p,)):
                    hash_span(span)
            for span in chunker.cut_final():
                hash_span(span)

        record(f"{algorithm}+sha256 sync", sync_hashed)

        def parallel_buffer(params: ChunkParams = params) -> None:
            for _ in iter_buffer_chunks(data, params):
                pass

        record(f"{algorithm}+sha256 parallel buffer", parallel_buffer)

        def parallel_file(params: ChunkParams = params) -> None:
            for _ in iter_file_chunks(io.BytesIO(data), params):
                pass

        record(f"{algorithm}+sha256 parallel file", parallel_file)

        for file_hash in (True, False):

            def run_pipeline(params: ChunkParams = params, file_hash: bool = file_hash) -> None:
                async def source() -> AsyncIterator[bytes]:
                    for p in pieces:
                        yield p

                async def consume() -> int:
                    pipeline = ChunkPipeline(params, file_hash=file_hash)
                    total = 0
                    async for chunk in pipeline.chunks(source()):
                        total += chunk.length
                    if file_hash and pipeline.sha256 != expected_sha:
                        raise AssertionError("pipeline whole-stream sha256 is wrong")
                    return total

                if asyncio.run(consume()) != size:
                    raise AssertionError("pipeline lost bytes")

            suffix = "" if file_hash else ", no file hash"
            record(f"{algorithm}+sha256 pipeline{suffix}", run_pipeline)

    for name in ("parallel buffer", "parallel file"):
        results[f"ratio fastcdc+sha256 {name} / sha256"] = (
            results[f"fastcdc+sha256 {name}"] / results["sha256"]
        )
    results["ratio fastcdc+sha256 pipeline / sha256"] = (
        results["fastcdc+sha256 pipeline"] / results["sha256"]
    )
    results["ratio fastcdc+sha256 pipeline, no file hash / sha256"] = (
        results["fastcdc+sha256 pipeline, no file hash"] / results["sha256"]
    )
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in results.items()}))
    else:
        for name, value in results.items():
            if name.startswith("ratio"):
                print(f"{name:<58} {value:5.2f}x")
        print(
            f"({args.size_mib} MiB random input, {args.piece_kib} KiB pieces, "
            f"best of {args.repeat}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})"
        )
    return results


if __name__ == "__main__":
    main()
