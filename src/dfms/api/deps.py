"""FastAPI dependencies: the application context and the authenticated principal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from dfms.auth.tokens import parse_bearer
from dfms.context import AppContext
from dfms.errors import AuthTokenInvalid


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    role: str


def get_principal(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> Principal:
    token = parse_bearer(request.headers.get("authorization"))
    claims = ctx.tokens.verify_access(token)
    try:
        user_id = uuid.UUID(claims.user_id)
    except ValueError as exc:
        raise AuthTokenInvalid() from exc
    return Principal(user_id, claims.role)


Ctx = Annotated[AppContext, Depends(get_ctx)]
CurrentUser = Annotated[Principal, Depends(get_principal)]
