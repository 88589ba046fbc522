"""CPU per token of the LLM client alone, in a process of its own (for B7):

python -m bench.cost client PORT N raw|parsed   N concurrent replies read from
    bench/llm_server.py, through the worker's provider (`raw`: the raw streaming response parsed
    with orjson) or through the package's parsed stream (`parsed`: a pydantic object per chunk,
    the worker's path before B7)

Prints one JSON line: {"tokens_per_s", "us_per_token"} over a window once every reply runs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import orjson

from config.settings import Settings

START, WINDOW = 2.0, 5.0
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Go."}]


async def measured(run_one: Callable[[list[int]], Awaitable[None]], count: int) -> dict[str, float]:
    """CPU of this process per token while `count` copies of run_one count their tokens."""
    tokens = [0]
    tasks = [asyncio.create_task(run_one(tokens)) for _ in range(count)]
    await asyncio.sleep(START)
    first, cpu, wall = tokens[0], time.process_time(), time.monotonic()
    await asyncio.sleep(WINDOW)  # a busy loop wakes later: the rate is over the real time
    done, used, wall = tokens[0] - first, time.process_time() - cpu, time.monotonic() - wall
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"tokens_per_s": done / wall, "us_per_token": used / max(done, 1) * 1e6}


async def client(port: int, count: int, raw: bool) -> dict[str, float]:
    from workers.llm.openai import OpenAILLM

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        LLM_PROVIDER="openai",
        OPENAI_API_KEY="bench",
        OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
        LLM_MODEL="bench",
        WORKER_CONCURRENCY=count,
    )
    llm = OpenAILLM(settings)

    async def one(tokens: list[int]) -> None:
        while True:
            if raw:
                async for piece in llm.stream_reply(MESSAGES):
                    tokens[0] += isinstance(piece, str)
            else:
                stream = await llm.client.chat.completions.create(
                    model="bench",
                    messages=MESSAGES,
                    stream=True,
                    max_tokens=1024,  # type: ignore[arg-type]
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        tokens[0] += 1

    try:
        return await measured(one, count)
    finally:
        await llm.aclose()


def main() -> None:
    result = client(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "raw")
    try:
        import uvloop

        print(orjson.dumps(uvloop.run(result)).decode(), flush=True)
    except ImportError:
        print(orjson.dumps(asyncio.run(result)).decode(), flush=True)


if __name__ == "__main__":
    main()
