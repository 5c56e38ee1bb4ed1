"""The composition root: builds settings-driven resources once and passes them down.

``AppContext.open(settings)`` creates the database engine, signing keys, chunk stores, ring and
services; ``aclose()`` releases them. The API app, the CLI and the tests all go through here, so
they find the database, keys and nodes the same way.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dfms.auth.keys import KeyRing, ensure_keys, load_keyring
from dfms.auth.passwords import PasswordHasher
from dfms.auth.tokens import TokenService
from dfms.chunking import ChunkParams
from dfms.config import Settings
from dfms.metadata.db import Database
from dfms.metadata.migrate import require_current, upgrade
from dfms.metadata.repositories import NodeRepository
from dfms.observability import Metrics
from dfms.placement.ring import HashRing, NodeInfo
from dfms.services.admin import AdminService
from dfms.services.files import FileService
from dfms.services.folders import FolderService
from dfms.services.multipart import MultipartService
from dfms.services.ratelimit import RateLimiter
from dfms.services.search import SearchService
from dfms.services.uploads import UploadService
from dfms.services.users import UserService
from dfms.services.versions import VersionService
from dfms.storage.base import ChunkStore
from dfms.storage.cluster import RepairQueue, ReplicatedStore
from dfms.storage.local import LocalDirStore
from dfms.workers.gc import GarbageCollector


def chunk_params(settings: Settings) -> ChunkParams:
    c = settings.chunking
    return ChunkParams(c.algorithm, c.min_size, c.avg_size, c.max_size)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    keyring: KeyRing
    tokens: TokenService
    ring: HashRing
    stores: dict[str, ChunkStore]
    store: ReplicatedStore
    repair: RepairQueue
    executor: ThreadPoolExecutor
    users: UserService
    uploads: UploadService
    files: FileService
    gc: GarbageCollector
    folders: FolderService
    versions: VersionService
    search: SearchService
    multipart: MultipartService
    admin: AdminService
    metrics: Metrics
    ratelimit: RateLimiter
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    async def open(
        cls, settings: Settings, *, migrate: bool = True, create_keys: bool = True
    ) -> AppContext:
        """Build every resource. ``migrate`` applies pending migrations and ``create_keys``
        creates a first signing key if there is none (embedded mode, ``dfms serve``); without
        them (``dfms gateway``) an outdated schema or a missing key is a :class:`ConfigError`."""
        db = Database.from_url(
            settings.database_url,
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
        )
        try:
            if migrate:
                await upgrade(db)
            else:
                await require_current(db)
            keys_dir = settings.keys_dir
            if create_keys:
                await asyncio.to_thread(ensure_keys, keys_dir)
            keyring = await asyncio.to_thread(load_keyring, keys_dir)
            a = settings.auth
            tokens = TokenService(
                keyring,
                issuer=a.issuer,
                audience=a.audience,
                access_ttl=a.access_ttl,
                refresh_ttl=a.refresh_ttl,
                leeway=a.leeway,
            )
            nodes = settings.node_list()
            stores: dict[str, ChunkStore] = {}
            for n in nodes:
                assert n.path is not None
                stores[n.id] = await LocalDirStore.open(
                    n.path,
                    name=n.id,
                    fsync=settings.storage.fsync,
                    cache_written=settings.storage.cache_written,
                )
            async with db.write() as s:
                repo = NodeRepository(s)
                for n in nodes:
                    await repo.upsert(n.id, f"file://{n.path}", n.zone, n.weight)
            ring = HashRing(
                [NodeInfo(n.id, zone=n.zone, weight=n.weight) for n in nodes],
                vnodes_per_node=settings.storage.vnodes_per_node,
            )
            repair = RepairQueue()
            st = settings.storage
            store = ReplicatedStore(
                ring,
                stores,
                replication=st.replication,
                write_quorum=st.effective_write_quorum,
                timeout=st.timeout,
                repair=repair,
            )
            executor = ThreadPoolExecutor(
                max_workers=max(4, (os.cpu_count() or 2) * 2), thread_name_prefix="dfms-cpu"
            )
            hasher = PasswordHasher(rounds=a.bcrypt_rounds)
            uploads = UploadService(
                db,
                store,
                chunk_params(settings),
                max_size=settings.upload.max_size,
                write_concurrency=st.write_concurrency,
                executor=executor,
                retention=settings.versions.retention,
                pin_ttl=settings.gc.pin_ttl,
            )
            multipart = MultipartService(
                db,
                uploads,
                store,
                min_part_size=settings.multipart.min_part_size,
                session_ttl=settings.multipart.session_ttl,
                executor=executor,
            )
            users = UserService(
                db,
                tokens,
                hasher,
                default_quota=settings.upload.default_quota,
                active_cache_ttl=min(a.active_cache_ttl, a.access_ttl),
            )
            metrics = Metrics()
            # Builds no connection yet (Redis connects on first use).
            ratelimit = RateLimiter(settings.ratelimit, metrics)
            return cls(
                settings=settings,
                db=db,
                keyring=keyring,
                tokens=tokens,
                ring=ring,
                stores=stores,
                store=store,
                repair=repair,
                executor=executor,
                users=users,
                uploads=uploads,
                files=FileService(db, store),
                gc=GarbageCollector(db, store, settings.gc, before_pass=multipart.expire_sessions),
                folders=FolderService(db),
                versions=VersionService(db, retention=settings.versions.retention),
                search=SearchService(db),
                multipart=multipart,
                admin=AdminService(db, store, users.accounts),
                metrics=metrics,
                ratelimit=ratelimit,
            )
        except BaseException:
            await db.dispose()
            raise

    async def aclose(self) -> None:
        for s in self.stores.values():
            await s.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self.ratelimit.aclose()
        await self.db.dispose()
