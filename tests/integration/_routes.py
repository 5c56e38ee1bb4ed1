"""The application's route table as (method, path) pairs, for tests that must cover every route.

FastAPI 0.16x keeps included routers as nested entries of ``app.routes``; older versions
flattened them. Both are handled, so the tests do not depend on the installed version.
"""

from __future__ import annotations

import re
from typing import Any

PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def app_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, full path) the app answers, HEAD excluded, sorted."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI < 0.16x: app.routes is already flat
        entries: list[Any] = list(app.routes)
    else:
        entries = list(iter_route_contexts(app.routes))
    out = set()
    for route in entries:
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or set()
        if path is None:
            continue
        out.update((m, path) for m in methods if m != "HEAD")
    return sorted(out)


def path_params(path: str) -> list[str]:
    return PATH_PARAM.findall(path)
