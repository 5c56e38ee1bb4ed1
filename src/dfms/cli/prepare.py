"""``python -m dfms.cli.prepare serve|gateway``: the start-up work of ``dfms serve`` and
``dfms gateway``, run in a child process (see ``dfms.cli.serve._prepare``).

Reads the settings as JSON on stdin. ``serve``: applies migrations and creates a first signing
key; ``gateway``: checks that the schema is current and a key exists. Exit 0, or exit 2 with the
error as the last line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys

from dfms.config import Settings
from dfms.errors import DFMSError


async def prepare(settings: Settings, role: str) -> None:
    from dfms.context import AppContext

    if role == "gateway":
        ctx = await AppContext.open(settings, migrate=False, create_keys=False)
    else:
        ctx = await AppContext.open(settings)
    await ctx.aclose()


def main(argv: list[str]) -> int:
    from dfms.observability import configure_logging

    role = argv[0] if argv else "serve"
    settings = Settings(**json.loads(sys.stdin.read()))
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        asyncio.run(prepare(settings, role))
    except DFMSError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
