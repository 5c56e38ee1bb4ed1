"""Search latency with 100k files of one user, through SearchService (the code behind
GET /search: query parsing, one read session, count + page of 50, ORM rows).

Baseline measured in the same run, on the same database: a primary-key lookup of one entry
through the same session machinery (the cheapest metadata read the API does). Target: a search
answers within 50 ms (median and p95 printed). Runs on SQLite (embedded) and, with
``--postgres URL`` (or ``DFMS_TEST_POSTGRES_URL``), on a fresh PostgreSQL database.

    python benchmarks/bench_search.py [--files 100000] [--runs 30] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select

from dfms.metadata.db import Database
from dfms.metadata.migrate import upgrade
from dfms.metadata.models import Entry, User, utcnow
from dfms.services.search import SearchService, flatten_metadata

PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
TARGET_MS = 50.0


def vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


async def populate(db: Database, files: int) -> tuple[uuid.UUID, uuid.UUID, list[str]]:
    """One user, 100 folders (10 top-level with 9 children each) and ``files`` files spread over
    them; 10% of the files carry metadata. Returns (user id, one folder id, the vocabulary)."""
    rng = random.Random(4)
    words = vocabulary(rng)
    exts = ["pdf", "txt", "jpg", "png", "docx", "xlsx", "mp4", "csv"]
    mimes = {"pdf": "application/pdf", "txt": "text/plain", "jpg": "image/jpeg",
             "png": "image/png", "docx": "application/msword", "xlsx": "application/vnd.ms-excel",
             "mp4": "video/mp4", "csv": "text/csv"}  # fmt: skip
    user_id, root_id = uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    async with db.write() as s:
        s.add(User(id=user_id, email="bench@example.com", password_hash="x", display_name="b",
                   quota_bytes=1 << 50, used_bytes=0, created_at=now, updated_at=now))  # fmt: skip
        await s.flush()
        await s.execute(
            insert(Entry),
            [{"id": root_id, "owner_id": user_id, "parent_id": None, "kind": "folder",
              "name": "", "size": 0, "created_at": now, "updated_at": now}],
        )  # fmt: skip
    folders: list[uuid.UUID] = []
    rows: list[dict[str, Any]] = []
    for i in range(10):
        top = uuid.uuid4()
        folders.append(top)
        rows.append({"id": top, "owner_id": user_id, "parent_id": root_id, "kind": "folder",
                     "name": f"{words[i]} projects", "size": 0, "created_at": now,
                     "updated_at": now})  # fmt: skip
        for j in range(9):
            sub = uuid.uuid4()
            folders.append(sub)
            rows.append({"id": sub, "owner_id": user_id, "parent_id": top, "kind": "folder",
                         "name": f"{words[10 + j]} {j}", "size": 0, "created_at": now,
                         "updated_at": now})  # fmt: skip
    async with db.write() as s:
        await s.execute(insert(Entry), rows)
    batch: list[dict[str, Any]] = []
    for i in range(files):
        ext = exts[i % len(exts)]
        name = f"{rng.choice(words)} {rng.choice(words)} {i:06d}.{ext}"
        meta = None
        if i % 10 == 0:
            meta = {"project": rng.choice(words), "owner": rng.choice(words)}
        batch.append({"id": uuid.uuid4(), "owner_id": user_id, "parent_id": folders[i % 100],
                      "kind": "file", "name": name, "size": rng.randint(1, 1 << 30),
                      "mime_type": mimes[ext], "user_metadata": meta,
                      "search_meta": flatten_metadata(meta) if meta else None,
                      "created_at": now, "updated_at": now})  # fmt: skip
        if len(batch) == 5000:
            async with db.write() as s:
                await s.execute(insert(Entry), batch)
            batch = []
    if batch:
        async with db.write() as s:
            await s.execute(insert(Entry), batch)
    if db.engine.dialect.name == "postgresql":
        # What autovacuum would do after a bulk load: give the planner statistics.
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE entries")
    return user_id, folders[0], words


async def measure(fn: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float, Any]:
    result = await fn()  # warm-up (plan caches, page cache)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], result


async def bench(url: str, files: int, runs: int) -> list[tuple[str, float, float, int]]:
    db = Database.from_url(url)
    try:
        await upgrade(db)
        t = time.perf_counter()
        user_id, folder, words = await populate(db, files)
        print(f"  populated {files} files in {time.perf_counter() - t:.1f} s", flush=True)
        svc = SearchService(db)
        async with db.read() as s:
            some_id = (
                await s.execute(select(Entry.id).where(Entry.kind == "file").limit(1))
            ).scalar_one()

        async def pk_lookup() -> int:
            async with db.read() as s:
                e = (await s.execute(select(Entry).where(Entry.id == some_id))).scalar_one()
            return 1 if e else 0

        def q(**kw: Any) -> Callable[[], Awaitable[int]]:
            async def run() -> int:
                return (await svc.search(user_id, page_size=50, **kw)).total

            return run

        cases: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            ("baseline: primary-key lookup", pk_lookup),
            ("name substring, selective (q=word pair)", q(q=f"{words[100]} {words[200]}"[:9])),
            ("name substring, one word (q=word)", q(q=words[1234])),
            ("name substring, digits (q=04242)", q(q="04242")),
            ("metadata value (q=word, 10% have metadata)", q(q=words[2500])),
            ("name + type=image + size range", q(q=words[77], entry_type="image", min_size=1000)),
            ("name + folder subtree", q(q=words[321], folder_id=folder)),
            ("broad: ~1/8 of files match (q=.pdf)", q(q=".pdf")),
            ("short query, no trigram (q=2 chars)", q(q="qz")),
            ("no q: type=image only", q(entry_type="image")),
        ]
        out = []
        for label, fn in cases:
            med, p95, total = await measure(fn, runs)
            out.append((label, med, p95, int(total)))
        return out
    finally:
        await db.dispose()


async def pg_database(base: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    import asyncpg

    admin = base.replace("postgresql+asyncpg://", "postgresql://")
    name = f"dfms_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(admin)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return f"{base.rsplit('/', 1)[0]}/{name}", drop


def report(engine: str, rows: list[tuple[str, float, float, int]]) -> None:
    print(f"\n{engine}: median / p95 latency (ms), matches")
    for label, med, p95, total in rows:
        flag = "" if label.startswith("baseline") else ("  ok" if p95 < TARGET_MS else "  SLOW")
        print(f"  {label:<46} {med:8.2f} {p95:8.2f} {total:8d}{flag}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--postgres", default=os.environ.get("DFMS_TEST_POSTGRES_URL", PG_DEFAULT))
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    print(f"search benchmark: {args.files} files of one user, {args.runs} runs per query, "
          f"target < {TARGET_MS:.0f} ms")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite (FTS5 trigram):", flush=True)
        report("SQLite", await bench(f"sqlite+aiosqlite:///{tmp}/bench.db", args.files, args.runs))
    if not args.no_postgres:
        print("PostgreSQL (pg_trgm GIN):", flush=True)
        try:
            url, drop = await pg_database(args.postgres)
        except OSError as exc:
            print(f"  skipped: PostgreSQL not reachable ({exc})")
            return
        try:
            report("PostgreSQL", await bench(url, args.files, args.runs))
        finally:
            await drop()


if __name__ == "__main__":
    asyncio.run(main())
