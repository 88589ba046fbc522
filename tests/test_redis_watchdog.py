"""The multiplexed connection's watchdog (backend/redis/wire.py) tells a stalled Redis from a busy
event loop: an answer that arrived while the loop was held elsewhere (a worker at full CPU) is
read, not taken for a stall. Before, the watchdog (on uvloop, timers run before the loop reads its
sockets) closed the healthy connection and failed every call on it: the workers' lease renewals
too, and the API then ended their replies as abandoned (B6 over HTTP: 260 of 1,000 replies)."""

from __future__ import annotations

import signal
import time

import pytest
import uvloop
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.redis.wire import MultiplexedConnection, ServerAddress, pack_command
from devstack.redis_server import RedisServer

TIMEOUT = 0.3


def test_a_busy_loop_is_not_a_stalled_redis(redis_url: str) -> None:
    async def scenario() -> object:
        connection = MultiplexedConnection(ServerAddress.from_url(redis_url), TIMEOUT)
        try:
            assert await connection.call("PING") == b"PONG"  # connected
            protocol = connection._protocol
            assert protocol is not None
            # Within one turn of the loop, as in a worker at full CPU: the command is written, the
            # turn goes on for longer than the timeout (Redis answers meanwhile, nobody reads),
            # then the watchdog looks.
            answer = protocol.send(pack_command("PING"))
            protocol._flush()
            time.sleep(4 * TIMEOUT)  # noqa: ASYNC251  (the loop held on purpose)
            connection.check_stalled()
            return await answer
        finally:
            await connection.close()

    assert uvloop.run(scenario()) == b"PONG"


def test_a_command_still_queued_on_a_busy_loop_is_not_a_stalled_redis(redis_url: str) -> None:
    async def scenario() -> object:
        connection = MultiplexedConnection(ServerAddress.from_url(redis_url), TIMEOUT)
        try:
            assert await connection.call("PING") == b"PONG"
            protocol = connection._protocol
            assert protocol is not None
            answer = protocol.send(pack_command("PING"))  # queued: written at the end of the turn
            time.sleep(4 * TIMEOUT)  # noqa: ASYNC251  (the turn goes on, on purpose)
            connection.check_stalled()  # it has not waited on Redis at all yet
            return await answer
        finally:
            await connection.close()

    assert uvloop.run(scenario()) == b"PONG"


def test_a_stalled_redis_still_fails_the_call_within_the_timeout() -> None:
    server = RedisServer(None).start()
    try:

        async def scenario() -> float:
            connection = MultiplexedConnection(ServerAddress.from_url(server.url), TIMEOUT)
            try:
                assert await connection.call("PING") == b"PONG"
                assert server.process is not None
                server.process.send_signal(signal.SIGSTOP)
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError):
                    await connection.call("PING")
                return time.monotonic() - started
            finally:
                await connection.close()

        try:
            waited = uvloop.run(scenario())
        finally:
            assert server.process is not None
            server.process.send_signal(signal.SIGCONT)
        assert TIMEOUT <= waited < TIMEOUT * 3
    finally:
        server.stop()
