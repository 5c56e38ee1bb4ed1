"""Accounting invariants checked after tree, version and multipart operations.

- every manifest's ``ref_count`` equals the number of versions pointing at it;
- every chunk's ``ref_count`` equals its occurrences in manifests plus in multipart parts
  (exactly: nothing leaked, nothing released twice);
- every user's ``used_bytes`` equals the logical size of the versions of their live files;
- no version belongs to a deleted entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text


async def chunk_refs(ctx: Any) -> dict[str, int]:
    async with ctx.db.read() as s:
        rows = (await s.execute(text("SELECT hash, ref_count FROM chunks"))).all()
    return {h: int(n) for h, n in rows}


async def assert_accounting(ctx: Any) -> None:
    async with ctx.db.read() as s:
        manifests = (
            await s.execute(
                text(
                    "SELECT m.id, m.ref_count, (SELECT count(*) FROM versions v "
                    "WHERE v.manifest_id = m.id) FROM manifests m"
                )
            )
        ).all()
        for mid, ref, n in manifests:
            assert ref == n, f"manifest {mid}: ref_count {ref} but {n} versions"
        chunks = (
            await s.execute(
                text(
                    "SELECT c.hash, c.ref_count,"
                    " (SELECT count(*) FROM manifest_chunks mc WHERE mc.chunk_hash = c.hash),"
                    " (SELECT count(*) FROM upload_part_chunks pc WHERE pc.chunk_hash = c.hash)"
                    " FROM chunks c"
                )
            )
        ).all()
        for h, ref, in_manifests, in_parts in chunks:
            assert ref == in_manifests + in_parts, (
                f"chunk {h[:12]}: ref_count {ref}, occurrences {in_manifests} + {in_parts}"
            )
        users = (
            await s.execute(
                text(
                    "SELECT u.id, u.used_bytes, (SELECT coalesce(sum(v.size), 0) FROM versions v"
                    " JOIN entries e ON e.id = v.entry_id"
                    " WHERE e.owner_id = u.id AND e.deleted_at IS NULL) FROM users u"
                )
            )
        ).all()
        for uid, used, expected in users:
            assert used == expected, f"user {uid}: used_bytes {used}, versions hold {expected}"
        orphans = (
            await s.execute(
                text(
                    "SELECT count(*) FROM versions v JOIN entries e ON e.id = v.entry_id"
                    " WHERE e.deleted_at IS NOT NULL"
                )
            )
        ).scalar_one()
        assert orphans == 0, f"{orphans} versions of deleted entries"
