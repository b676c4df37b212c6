"""Deployments the HTTP tests serve (imported by replicas by path)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from actors import serve


@serve.deployment
class Plain:
    """Answers by the path's last segment: json, bytes, text, response, none, boom."""

    async def __call__(self, request: Request) -> Any:
        kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if kind == "bytes":
            return b"\x00\x01raw"
        if kind == "text":
            return "plain text"
        if kind == "response":
            return JSONResponse({"made": "by hand"}, status_code=201, headers={"x-custom": "yes"})
        if kind == "none":
            return None
        if kind == "boom":
            raise ValueError("secret detail of the failure")
        if kind == "echo":
            return {"method": request.method, "body": (await request.body()).decode(), "query": dict(request.query_params),
                    "root_path": request.scope["root_path"], "path": request.url.path}
        return {"json": True, "path": request.url.path}


@serve.deployment
class SyncPlain:
    def __call__(self, request: Request) -> str:
        return f"sync {request.method} {request.url.path}"


@serve.deployment
class Slow:
    """Sleeps the seconds in the query; writes <flag_dir>/started-<tag> first, and cancelled-<tag> if cancelled."""

    def __init__(self, flag_dir: str) -> None:
        self.flag_dir = Path(flag_dir)

    async def __call__(self, request: Request) -> str:
        (self.flag_dir / f"started-{request.query_params.get('tag', 'x')}").write_text("yes")
        try:
            await asyncio.sleep(float(request.query_params.get("s", "0")))
        except asyncio.CancelledError:
            (self.flag_dir / f"cancelled-{request.query_params.get('tag', 'x')}").write_text("yes")
            raise
        return "slept"


@serve.deployment
class Ticker:
    """Streams a chunk, then waits for the test's go-ahead file before the next;
    ``/forever`` streams until cancelled and then writes a flag."""

    def __init__(self, flag_dir: str) -> None:
        self.flag_dir = Path(flag_dir)

    async def __call__(self, request: Request) -> Any:
        from starlette.responses import StreamingResponse

        forever = request.url.path.endswith("/forever")

        async def chunks() -> Any:
            try:
                yield "first\n"
                for i in range(100_000 if forever else 1):
                    for _ in range(2000):  # up to 20 s for the go-ahead
                        if forever or (self.flag_dir / "go").exists():
                            break
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.01 if forever else 0)
                    yield f"tick {i}\n"
            finally:
                (self.flag_dir / ("closed-forever" if forever else "closed")).write_text(str(os.getpid()))

        return StreamingResponse(chunks(), media_type="text/plain")


api = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@serve.deployment
@serve.ingress(api)
class Api:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @api.get("/items/{item_id}")
    def item(self, item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q, "greeting": self.greeting}

    @api.post("/items")
    async def create(self, item: Item) -> dict[str, Any]:
        return {"created": item.name, "price": item.price, "by": self.greeting}

    @api.get("/raw")
    def raw(self) -> Response:
        return Response(b"raw bytes", media_type="application/octet-stream")


@serve.deployment
async def hello(request: Request) -> str:
    """A function deployment over HTTP."""
    return f"hello {request.query_params.get('name', 'world')}"


@serve.deployment
class HttpModels:
    """A multiplexed model chosen by the serve_multiplexed_model_id header."""

    @serve.multiplexed(max_num_models_per_replica=2)
    def get_model(self, model_id: str) -> str:
        return f"model-{model_id}"

    async def __call__(self, request: Request) -> str:
        return await self.get_model(serve.get_multiplexed_model_id())
