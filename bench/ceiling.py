"""The ceiling: a bare Sanic SSE endpoint writing frames from memory (no Redis, no hub).

python -m bench.ceiling PORT. GET /stream?n=N&rate=R writes N frames at R per second, each in
the relay's format with the publish time, then a final event.
"""

from __future__ import annotations

import asyncio
import sys
import time

from sanic import Request, Sanic

app = Sanic("ceiling")
app.config.update(AUTO_EXTEND=False, RESPONSE_TIMEOUT=600)


@app.get("/stream")
async def stream(request: Request) -> None:
    count = int(request.args.get("n", "100"))
    interval = 1 / float(request.args.get("rate", "20"))
    response = await request.respond(
        content_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.send(b": ping\n\n")
    # Every stream starts at the same moment (`start`, Unix time), like the relay's publisher.
    await asyncio.sleep(max(0.0, float(request.args.get("start", "0")) - time.time()))
    next_at = time.monotonic()
    for seq in range(1, count + 1):
        frame = f'id: 1-{seq}\ndata: {{"content":"tok ","t":{time.time():.6f}}}\n\n'
        await response.send(frame.encode())
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await response.send(f'id: 1-{count + 1}\nevent: done\ndata: {{"content":""}}\n\n'.encode())
    await response.eof()


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False, motd=False, backlog=4096)
