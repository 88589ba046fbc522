"""What one user holds in Redis at the per-user caps (README, "Running Redis as the primary store").

Fills one user of a private redis-server through the store's own calls (the same Lua as the API
and the workers: prompt stored, reply saved) until USER_STORAGE_MAX_BYTES or the history caps
refuse more, with SESSIONS_PER_USER_MAX sessions, then prints the counted bytes and what Redis
says the user's keys take (MEMORY USAGE of each, and used_memory before and after).

    python -m bench.user_at_caps            # the defaults
    python -m bench.user_at_caps --small    # 1-character prompts and replies: the history caps bind first
"""

from __future__ import annotations

import argparse
import asyncio

import redis as sync_redis

from backend.store import keys
from backend.store.chats import StorageFull
from backend.store.datastore import Store
from config.settings import Settings
from devstack.redis_server import RedisServer


async def fill(settings: Settings, prompt: str, reply: str) -> tuple[int, int]:
    """(user id, messages stored) once the user is at the caps."""
    store = Store(settings)
    try:
        for _ in range(settings.SESSIONS_PER_USER_MAX + 5):  # more logins than the cap keeps
            user_id, _ = await store.users.login("dev", "at-caps", "at-caps")
        messages = 0
        for _ in range(settings.CHATS_PER_USER_MAX):
            chat_id = await store.chats.create(user_id)
            for _ in range(settings.CHAT_HISTORY_MAX_MESSAGES // 2):
                try:
                    gen = await store.chats.start_reply(user_id, chat_id, prompt)
                except StorageFull:
                    return user_id, messages
                assert gen is not None
                await store.redis.set(keys.partial(user_id, chat_id), reply)  # what the chunks append
                await store.replies.finish(user_id, chat_id, gen, "stopped")  # saves the reply
                await store.redis.delete(keys.reply_log(user_id, chat_id, gen))  # logs expire
                messages += 2
        return user_id, messages
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1-character prompts and replies")
    options = parser.parse_args()
    server = RedisServer(None).start()
    try:
        settings = Settings(REDIS_URL=server.url)
        prompt, reply = ("?", "!") if options.small else ("x" * 8000, "y" * 4000)
        client = sync_redis.Redis.from_url(server.url)
        client.memory_purge()
        before = int(client.info("memory")["used_memory"])
        user_id, messages = asyncio.run(fill(settings, prompt, reply))
        after = int(client.info("memory")["used_memory"])
        user_keys = list(client.scan_iter(f"ai:{{u:{user_id}}}:*", count=1000))
        usage = sum(int(client.memory_usage(key, samples=0) or 0) for key in user_keys)
        counted = int(client.hget(keys.user(user_id), "storedBytes") or 0)
        print(f"messages stored: {messages:,} in {client.zcard(keys.chats(user_id)):,} chats")
        print(f"counted (storedBytes): {counted:,} bytes (cap {settings.USER_STORAGE_MAX_BYTES:,})")
        print(f"sessions kept: {client.zcard(keys.sessions(user_id))} (cap {settings.SESSIONS_PER_USER_MAX})")
        print(f"MEMORY USAGE of the user's {len(user_keys):,} keys: {usage:,} bytes")
        print(f"used_memory grew by: {after - before:,} bytes")
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
