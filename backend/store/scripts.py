"""The Lua scripts of `lua/`, loaded once per client and called by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

from backend.store.clients import AnyRedis

# An installed wheel ships lua/ inside this package (pyproject.toml's package-dir); a source
# checkout (and an editable install) has it at the top of the repository.
_PACKAGED = Path(str(resources.files(__package__) / "lua"))
LUA_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent.parent / "lua"


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
