"""The Lua scripts of `lua/`, loaded once per client and called by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

from backend.store.clients import AnyRedis

LUA_DIR = Path(__file__).resolve().parent.parent.parent / "lua"


class Scripts:
    """`scripts.answer(keys=[...], args=[...])` runs `lua/answer.lua` (EVALSHA, EVAL fallback)."""

    def __init__(self, redis: AnyRedis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            path.stem: redis.register_script(path.read_text()) for path in sorted(LUA_DIR.glob("*.lua"))
        }

    def __getattr__(self, name: str) -> Any:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(f"no script lua/{name}.lua") from None

    def sha(self, name: str) -> str:
        return self._scripts[name].sha

    def source(self, name: str) -> str:
        return self._scripts[name].script  # type: ignore[return-value]
