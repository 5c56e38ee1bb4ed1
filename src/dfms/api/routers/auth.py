"""``/auth``: register, login, refresh, logout."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dfms.api.deps import Ctx
from dfms.api.schemas import (
    AuthOut,
    LoginIn,
    RefreshIn,
    RefreshOut,
    RegisterIn,
    TokensOut,
    UserOut,
    error_responses,
)
from dfms.services.users import Session

router = APIRouter(prefix="/auth", tags=["auth"])
ERR = error_responses(400, 401, 409, 429)  # 429: the per-IP auth rate limit


def _tokens(session: Session) -> TokensOut:
    t = session.tokens
    return TokensOut(
        access_token=t.access_token,
        refresh_token=t.refresh_token,
        expires_in=t.expires_in,
        token_type="Bearer",
    )


def _auth(session: Session, response: Response) -> AuthOut:
    response.headers["Cache-Control"] = "no-store"
    u = session.user
    return AuthOut(
        user=UserOut(id=u.id, email=u.email, display_name=u.display_name, role=u.role),
        tokens=_tokens(session),
    )


@router.post("/register", status_code=201, response_model=AuthOut, responses=ERR)
async def register(body: RegisterIn, ctx: Ctx, response: Response) -> AuthOut:
    return _auth(await ctx.users.register(body.email, body.password, body.display_name), response)


@router.post("/login", response_model=AuthOut, responses=ERR)
async def login(body: LoginIn, ctx: Ctx, response: Response) -> AuthOut:
    return _auth(await ctx.users.login(body.email, body.password), response)


@router.post("/refresh", response_model=RefreshOut, responses=ERR)
async def refresh(body: RefreshIn, ctx: Ctx, response: Response) -> RefreshOut:
    session = await ctx.users.refresh(body.refresh_token)
    response.headers["Cache-Control"] = "no-store"
    return RefreshOut(tokens=_tokens(session))


@router.post("/logout", status_code=204, responses=ERR)
async def logout(body: RefreshIn, ctx: Ctx) -> Response:
    await ctx.users.logout(body.refresh_token)
    return Response(status_code=204)
