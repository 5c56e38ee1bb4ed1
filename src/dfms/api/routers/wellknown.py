"""``/.well-known/jwks.json``: the public keys that verify DFMS tokens (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dfms.api.deps import Ctx
from dfms.api.schemas import JWKSOut

router = APIRouter(tags=["auth"])


@router.get(
    "/.well-known/jwks.json",
    response_model=JWKSOut,
    summary="Public keys (JWK set) of every configured signing key; the newest one signs",
)
async def jwks(ctx: Ctx, response: Response) -> JWKSOut:
    # Keys change only when a gateway restarts with a new key (dfms keys generate).
    response.headers["Cache-Control"] = "public, max-age=300"
    return JWKSOut.model_validate(ctx.tokens.jwks())
