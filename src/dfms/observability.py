"""Logging setup (structlog) and Prometheus metrics. Tracing joins here in its own issue.

Metrics live in a :class:`Metrics` holder with its own ``CollectorRegistry``, built by the
application context (no process-global registry: two contexts in one process, as in the tests,
count separately)."""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    # Alembic narrates every migration context at INFO ("Context impl SQLiteImpl."): noise
    logging.getLogger("alembic").setLevel(max(lvl, logging.WARNING))
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class Metrics:
    """The Prometheus metrics of one application context, served at ``GET /metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ratelimit_storage_errors = Counter(
            "dfms_ratelimit_storage_errors",
            "Rate-limit checks that failed because the limit storage (e.g. Redis) did not answer.",
            registry=self.registry,
        )
        self.ratelimit_rejected = Counter(
            "dfms_ratelimit_rejected",
            "Requests refused with 429, by rate-limit tier.",
            ["tier"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
