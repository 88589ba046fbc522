"""The Lua scripts of `lua/`, called by name on the process's script path (one multiplexed
connection on a single Redis, one per node on a Cluster: see backend/redis/wire.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from backend.redis.wire import CommandPath, CommandPrefix, pack_command

# An installed wheel ships lua/ inside this package (pyproject.toml's package-dir); a source
# checkout (and an editable install) has it at the top of the repository.
_PACKAGED = Path(str(resources.files("backend.store") / "lua"))
LUA_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "lua"

Arg = str | bytes | int | float
Key = str | bytes
Call = tuple[Sequence[Key], Sequence[Arg]]  # one call's keys and arguments
# Calls of `many` in flight together. Small on purpose: each batch's answers wake all of its
# calls in one turn of the event loop, so a batch of 500 held the loop (and every live frame
# behind it) for 60-120 ms on this box; 32 keep a turn near a millisecond.
MANY_IN_FLIGHT = 32


def decoded(reply: Any) -> Any:
    """A reply as redis-py gives it with decode_responses: text as str, numbers and nesting kept."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, list):
        return [decoded(item) for item in reply]
    return reply


class Script:
    """One script: `await script(keys=[...], args=[...])` runs it with EVALSHA (loaded on
    NOSCRIPT) and answers with text decoded. Every key must share the first key's slot."""

    __slots__ = ("path", "sha", "source")

    def __init__(self, source: str, path: CommandPath) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.path = path

    async def __call__(self, keys: Sequence[Key], args: Sequence[Arg] = (), *, path: CommandPath | None = None) -> Any:
        """`path`: another lane than the script path (heartbeats, which must not queue behind chunks)."""
        command = pack_command("EVALSHA", self.sha, len(keys), *keys, *args)
        return decoded(await (path or self.path).evalsha(self.source, command, keys[0]))

    async def many(self, calls: Sequence[Call], *, path: CommandPath) -> None:
        """Run it once per (keys, args), MANY_IN_FLIGHT calls at a time: the calls of one batch
        leave together (one write per node), the answers are not needed. Between batches the
        event loop serves everything else."""
        for start in range(0, len(calls), MANY_IN_FLIGHT):
            await asyncio.gather(*(self(keys, args, path=path) for keys, args in calls[start : start + MANY_IN_FLIGHT]))

    async def send_many(self, calls: Sequence[Call], *, path: CommandPath) -> None:
        """Run it once per (keys, args), every call written at once with no task or coroutine
        per call (a busy worker's lease renewals: hundreds of calls, whose answers only resolve
        futures). Calls that could not be written now, or failed, go again through `many`
        (which connects, loads the script, raises what Redis answered)."""
        written: list[tuple[asyncio.Future[Any], Sequence[Key], Sequence[Arg]]] = []
        again: list[Call] = []
        for keys, args in calls:
            answer = path.send_nowait(pack_command("EVALSHA", self.sha, len(keys), *keys, *args), keys[0])
            if answer is None:
                again.append((keys, args))
            else:
                written.append((answer, keys, args))
        if written:
            await asyncio.wait([answer for answer, _, _ in written])
            again += [(keys, args) for answer, keys, args in written if answer.cancelled() or answer.exception()]
        if again:
            await self.many(again, path=path)

    async def raw(self, command: bytes, key: str | bytes) -> Any:
        """A call packed by the caller (`prefix()` plus its arguments), answered as bytes: the
        hottest calls pack their fixed part once."""
        return await self.path.evalsha(self.source, command, key)

    def prefix(self, *fixed: Arg) -> CommandPrefix:
        """The EVALSHA up to `fixed` (the key count, the keys, the first arguments)."""
        return CommandPrefix("EVALSHA", self.sha, *fixed)


class Scripts:
    """`scripts.answer(keys=[...], args=[...])` runs `lua/answer.lua`."""

    def __init__(self, path: CommandPath) -> None:
        self._scripts = {file.stem: Script(file.read_text(), path) for file in sorted(LUA_DIR.glob("*.lua"))}

    def __getattr__(self, name: str) -> Script:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(f"no script lua/{name}.lua") from None
