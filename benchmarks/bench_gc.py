"""A GC pass over many chunk records, with a full-table-scan baseline measured in the same run.

    python benchmarks/bench_gc.py [--chunks 1000000] [--unreferenced 0.1] [--sample 500]
                                  [--orphans 100] [--batch 500] [--dry-run] [--json]

Builds a temporary SQLite metadata database (migrated like ``dfms serve`` does) holding
``--chunks`` chunk records, each with one replica row, of which ``--unreferenced`` (10%) have no
reference. Chunk bytes exist on disk (a real ``LocalDirStore``) only for a sample of
``--sample`` records (half of them unreferenced), plus ``--orphans`` files no record knows; the
other records stand for bytes on nodes that already lost them (deleting them is a no-op), so the
figure is the metadata side of GC plus a real store walk.

Then, in a fresh process (so that its peak memory is the measurement's own):

- the baseline: ``SELECT count(*) FROM chunks`` and a streamed scan of every (hash, ref_count);
- one GC pass with grace 0 (mark + sweep of every unreferenced chunk, orphan sweep), and with
  ``--dry-run`` a dry run first.

Reports seconds, the process's peak RSS (``VmHWM``, else ``ru_maxrss``) and its RSS right before
the pass (the interpreter with everything imported), next to the targets: under 60 s and 200 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 60.0
TARGET_MIB = 200.0
NODE = "node-1"


def rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB. Linux: ``VmHWM`` (reset by exec,
    unlike ``ru_maxrss``, which a child inherits from the parent that forked it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chunk_hash(i: int) -> str:
    return hashlib.sha256(i.to_bytes(8, "little")).hexdigest()


def is_unreferenced(i: int, fraction: float) -> bool:
    return i % round(1 / fraction) == 0


# -- building the data set ---------------------------------------------------------------------


def build(work: Path, n: int, fraction: float, sample: int, orphans: int) -> dict[str, Any]:
    from dfms.metadata.db import Database
    from dfms.metadata.migrate import upgrade

    db_path = work / "meta.db"
    url = f"sqlite+aiosqlite:///{db_path}"

    async def migrate() -> None:
        db = Database.from_url(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(migrate())
    started = time.perf_counter()
    stamp = "2026-01-01 00:00:00.000000"
    rng = random.Random(7)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: random-order inserts stay in memory
    step = 50_000
    unreferenced = 0
    with conn:
        for lo in range(0, n, step):
            rows = []
            for i in range(lo, min(n, lo + step)):
                free = is_unreferenced(i, fraction)
                unreferenced += free
                rows.append(
                    (chunk_hash(i), rng.randrange(4096, 65536), 0 if free else 1, "live", stamp)
                )
            conn.executemany(
                "INSERT INTO chunks (hash, size, ref_count, state, marked_at, created_at) "
                "VALUES (?, ?, ?, ?, NULL, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO chunk_replicas (chunk_hash, node_id, created_at) VALUES (?, ?, ?)",
                [(r[0], NODE, stamp) for r in rows],
            )
    conn.close()
    built = time.perf_counter() - started

    from dfms.storage.local import LocalDirStore

    store = LocalDirStore(work / "nodes" / NODE, name=NODE, fsync="never")
    step_ = max(1, n // max(1, sample))
    files = [(chunk_hash(i + k % 2), b"x" * 1024) for k, i in enumerate(range(0, n - 1, step_))]
    for _ in range(orphans):  # every other sampled record above is a referenced one
        data = rng.randbytes(2048)
        files.append((hashlib.sha256(data).hexdigest(), data))
    for h, data in files:  # chunk files as a store writes them (their content is never read)
        path = store.path_for(h)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {"db": str(db_path), "url": url, "unreferenced": unreferenced, "insert_s": built}


# -- the measured processes --------------------------------------------------------------------


async def child_measure(url: str, work: Path, batch: int, dry_run: bool) -> dict[str, Any]:
    """The baseline first, then the GC pass (the baseline streams: it adds little to the peak)."""
    return {
        "baseline": await child_baseline(url),
        "gc": await child_gc(url, work, batch, dry_run),
    }


async def child_baseline(url: str) -> dict[str, Any]:
    from sqlalchemy import select, text

    from dfms.metadata.db import Database
    from dfms.metadata.models import Chunk

    db = Database.from_url(url)
    try:
        idle = rss_mib()
        t0 = time.perf_counter()
        async with db.read() as s:
            count = int((await s.execute(text("SELECT count(*) FROM chunks"))).scalar_one())
        t1 = time.perf_counter()
        rows = 0
        async with db.read() as s:
            result = await s.stream(
                select(Chunk.hash, Chunk.ref_count).execution_options(yield_per=5000)
            )
            async for part in result.partitions():
                rows += len(part)
        t2 = time.perf_counter()
    finally:
        await db.dispose()
    return {
        "count": count,
        "count_s": t1 - t0,
        "scan_rows": rows,
        "scan_s": t2 - t1,
        "idle_rss_mib": idle,
        "peak_rss_mib": rss_mib(),
    }


async def child_gc(url: str, work: Path, batch: int, dry_run: bool) -> dict[str, Any]:
    from dfms.config import GCSettings
    from dfms.metadata.db import Database
    from dfms.placement.ring import HashRing, NodeInfo
    from dfms.storage.cluster import ReplicatedStore
    from dfms.storage.local import LocalDirStore
    from dfms.workers.gc import GarbageCollector

    db = Database.from_url(url)
    local = await LocalDirStore.open(work / "nodes" / NODE, name=NODE, fsync="never")
    store = ReplicatedStore(
        HashRing([NodeInfo(NODE)]), {NODE: local}, replication=1, write_quorum=1
    )
    gc = GarbageCollector(db, store, GCSettings(grace_period=0, batch_size=batch))
    out: dict[str, Any] = {}
    try:
        out["idle_rss_mib"] = rss_mib()
        if dry_run:
            t0 = time.perf_counter()
            dry = await gc.run_once(grace=0, dry_run=True)
            out["dry_run_s"] = time.perf_counter() - t0
            out["dry_run"] = dry.counts()
        t0 = time.perf_counter()
        report = await gc.run_once(grace=0)
        out["gc_s"] = time.perf_counter() - t0
        out["report"] = report.to_dict()
        out["peak_rss_mib"] = rss_mib()
    finally:
        await store.close()
        await db.dispose()
    return out


def run_child(args: list[str]) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"child {args[:2]} failed")
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1_000_000, help="chunk records (1,000,000)")
    ap.add_argument("--unreferenced", type=float, default=0.1, help="fraction without references")
    ap.add_argument("--sample", type=int, default=500, help="records whose bytes exist on disk")
    ap.add_argument("--orphans", type=int, default=100, help="chunk files no record knows")
    ap.add_argument("--batch", type=int, default=500, help="gc.batch_size")
    ap.add_argument("--dry-run", action="store_true", help="also time a dry run before the pass")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        work = Path(args.child[1])
        url = f"sqlite+aiosqlite:///{work / 'meta.db'}"
        result = asyncio.run(child_measure(url, work, args.batch, args.dry_run))
        print(json.dumps(result))
        return result

    with tempfile.TemporaryDirectory(prefix="dfms-bench-gc-") as tmp:
        work = Path(tmp)
        built = build(work, args.chunks, args.unreferenced, args.sample, args.orphans)
        extra = ["--dry-run"] if args.dry_run else []
        out = run_child(["--child", "measure", str(work), "--batch", str(args.batch), *extra])
        base, gc = out["baseline"], out["gc"]
        report = gc["report"]
        expected_left = args.chunks - built["unreferenced"]
        ok = (
            report["swept"] == built["unreferenced"]
            and report["stored_chunks"] == expected_left
            and report["orphans"] == args.orphans
            and (not args.dry_run or gc["dry_run"] == {k: report[k] for k in gc["dry_run"]})
        )
        result = {
            "chunks": args.chunks,
            "unreferenced": built["unreferenced"],
            "batch_size": args.batch,
            "insert_s": round(built["insert_s"], 2),
            "baseline_count_s": round(base["count_s"], 3),
            "baseline_scan_s": round(base["scan_s"], 3),
            "baseline_peak_rss_mib": round(base["peak_rss_mib"], 1),
            "gc_s": round(gc["gc_s"], 2),
            "gc_dry_run_s": round(gc["dry_run_s"], 2) if args.dry_run else None,
            "gc_idle_rss_mib": round(gc["idle_rss_mib"], 1),
            "gc_peak_rss_mib": round(gc["peak_rss_mib"], 1),
            "marked": report["marked"],
            "swept": report["swept"],
            "orphans": report["orphans"],
            "copies_removed": report["copies_removed"],
            "correct": ok,
            "within_target": gc["gc_s"] < TARGET_SECONDS and gc["peak_rss_mib"] < TARGET_MIB,
        }
    if args.json:
        print(json.dumps(result))
    else:
        n = result["chunks"]
        print(f"GC pass over {n:,} chunk records ({result['unreferenced']:,} unreferenced), ")
        print(f"batch {args.batch}, SQLite, {args.sample} sampled + {args.orphans} orphan files")
        print(f"  build (bulk insert, not measured)  {result['insert_s']:8.2f} s")
        print(f"  baseline SELECT count(*)            {result['baseline_count_s']:8.3f} s")
        print(f"  baseline scan of every record      {result['baseline_scan_s']:8.3f} s")
        if args.dry_run:
            print(f"  GC dry run                         {result['gc_dry_run_s']:8.2f} s")
        print(
            f"  GC pass (mark+sweep+orphans)       {result['gc_s']:8.2f} s   "
            f"(target < {TARGET_SECONDS:g} s)"
        )
        print(
            f"  peak RSS {result['gc_peak_rss_mib']:.1f} MiB (target < {TARGET_MIB:g}); "
            f"{result['gc_idle_rss_mib']:.1f} MiB before the pass, "
            f"after the baseline scan {result['baseline_peak_rss_mib']:.1f} MiB"
        )
        print(
            f"  marked {result['marked']:,}, swept {result['swept']:,}, "
            f"orphans {result['orphans']}, copies removed {result['copies_removed']}; "
            f"correct: {ok}, within target: {result['within_target']}"
        )
    if not ok:
        raise SystemExit("GC result is wrong")
    return result


if __name__ == "__main__":
    main()
