"""Commands from any API pod to every worker (a user's stop), over one pub/sub channel."""

from __future__ import annotations

import logging
from collections.abc import Callable

from backend.backoff import Backoff
from backend.redis.clients import AnyRedis, is_cluster
from backend.redis.errors import REDIS_FAILURES, translate_errors
from backend.store import keys

log = logging.getLogger("backend.store.control")

StopHandler = Callable[[int, int, int], None]


@translate_errors
class Control:
    def __init__(self, redis: AnyRedis, db: int) -> None:
        self.redis = redis
        self.channel = keys.control_channel(db)

    async def stop_reply(self, user_id: int, chat_id: int, gen: int) -> None:
        """Wherever the reply's writer runs, it hears this and cancels its LLM call."""
        await self.redis.publish(self.channel, f"stop {user_id} {chat_id} {gen}")

    async def listen(self, on_stop: StopHandler) -> None:
        """Hand every stop command to `on_stop`, forever; a lost connection is remade."""
        backoff = Backoff(0.1, cap=2.0)
        while True:
            pubsub = None
            try:
                if is_cluster(self.redis):
                    await self.redis.initialize()  # the cluster's pub/sub needs the slot map first
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                backoff.reset()
                while True:
                    # An idle connection is checked by redis-py (health_check_interval); a dead one raises.
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message["type"] != "message":
                        continue
                    parts = str(message["data"]).split()
                    if len(parts) == 4 and parts[0] == "stop" and all(p.isascii() and p.isdigit() for p in parts[1:]):
                        on_stop(*(int(p) for p in parts[1:]))
            except REDIS_FAILURES as error:
                log.warning("control channel lost, reconnecting", extra={"error": repr(error)})
                await backoff.sleep()
            finally:
                if pubsub is not None:
                    await pubsub.aclose()
