"""FastAPI dependencies: the application context and the authenticated principal.

``get_principal`` verifies the access token; ``get_current_user`` (what routes use as
``CurrentUser``) then checks that the account is still active and gives the role the request
acts with (see ``UserService.authorize``: cached for ``auth.active_cache_ttl`` seconds).
``AdminUser`` additionally requires the admin role (403 ``AUTH_FORBIDDEN`` otherwise).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from dfms.api.ratelimit import enforce_user_limits
from dfms.auth.tokens import parse_bearer
from dfms.context import AppContext
from dfms.errors import AuthForbidden, AuthTokenInvalid


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: str


async def get_principal(
    request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]
) -> Principal:
    token = parse_bearer(request.headers.get("authorization"))
    claims = ctx.tokens.verify_access(token)
    try:
        user_id = uuid.UUID(claims.user_id)
    except ValueError as exc:
        raise AuthTokenInvalid() from exc
    # Per-user rate limits (user tier; upload/download tier on those routes), before the route
    # reads a body. Raises RateLimitExceeded (429) or RateLimitUnavailable (503).
    await enforce_user_limits(request.scope, ctx.ratelimit, str(user_id))
    return Principal(user_id, claims.role)


async def get_current_user(
    principal: Annotated[Principal, Depends(get_principal)],
    ctx: Annotated[AppContext, Depends(get_ctx)],
) -> Principal:
    role = await ctx.users.authorize(principal.user_id, principal.role)
    return principal if role == principal.role else Principal(principal.user_id, role)


def require_admin(principal: Annotated[Principal, Depends(get_current_user)]) -> Principal:
    if principal.role != "admin":
        raise AuthForbidden("this route needs the admin role")
    return principal


Ctx = Annotated[AppContext, Depends(get_ctx)]
CurrentUser = Annotated[Principal, Depends(get_current_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]
