"""The minimal hub: a bare Sanic SSE endpoint fed by Redis pub/sub, the textbook way (no log, no
resume, no checks). B2's anchor for the relay's latency: the same publishers (append_chunk.lua),
the same Redis and client, only the relay replaced by the least a hub can do.

python -m bench.hub PORT REDIS_URL. GET /stream?channel=C subscribes C on the one pub/sub
connection (redis-py's asyncio PubSub, with hiredis), then writes every message published on C,
as it is, until a final event; GET /subscribed answers how many channels are subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import redis.asyncio as aioredis
from sanic import Request, Sanic
from sanic.response import text

from backend.sse import message_span

app = Sanic("hub")
app.config.update(AUTO_EXTEND=False, RESPONSE_TIMEOUT=600)
queues: dict[bytes, asyncio.Queue[bytes]] = {}


@app.before_server_start
async def connect(app: Sanic) -> None:
    app.ctx.redis = aioredis.Redis.from_url(sys.argv[2])
    app.ctx.pubsub = app.ctx.redis.pubsub()
    await app.ctx.pubsub.subscribe("hub-anchor")  # a connection with a subscription to listen on
    app.ctx.reader = asyncio.create_task(read(app.ctx.pubsub))


async def read(pubsub: aioredis.client.PubSub) -> None:
    async for message in pubsub.listen():  # no timeout per message (get_message's costs a timer each)
        if message["type"] == "message":
            queue = queues.get(message["channel"])
            if queue is not None:
                queue.put_nowait(message["data"])


@app.get("/subscribed")
async def subscribed(request: Request) -> object:
    return text(str(len(queues)))


@app.get("/stream")
async def stream(request: Request) -> None:
    channel = request.args["channel"][0].encode()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queues[channel] = queue
    await app.ctx.pubsub.subscribe(channel)
    response = await request.respond(
        content_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    try:
        await response.send(b": ping\n\n")
        while True:
            message = await queue.get()
            await response.send(message)
            if message_span(message)[2]:
                break
        await response.eof()
    finally:
        queues.pop(channel, None)
        with contextlib.suppress(Exception):
            await app.ctx.pubsub.unsubscribe(channel)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False, motd=False, backlog=4096)
