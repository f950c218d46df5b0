"""The floor: a bare ASGI app answering a constant top-10 JSON body (no model, no framework), served by
the same uvicorn stack as the Recops server. What our server adds on top of it is our cost."""

from __future__ import annotations

import json
from typing import Any

BODY = json.dumps(
    {
        "userId": "u1",
        "items": [{"itemId": f"i{i}", "score": 1.0 - i / 10} for i in range(10)],
        "fallback": False,
        "fallbackReason": None,
        "model": {"name": "const", "version": "1", "digest": "sha256:" + "0" * 64},
    }
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
