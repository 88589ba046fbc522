"""The Redis defaults the project ships: `make run`'s private Redis keeps its data (AOF) in a
git-ignored folder of the checkout, compose keeps its AOF on a named volume, and every Lua script
declares its flags (a writing script over maxmemory is refused whole)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import redis
import yaml

from backend.redis.scripts import LUA_DIR
from devstack.redis_server import RedisServer
from devstack.services import ROOT


def dev_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_run", ROOT / "scripts" / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_private_redis_keeps_its_data_across_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = dev_script()
    assert dev.DATA_DIR == ROOT / ".redis-data"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".redis-data/appendonlydir"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".redis-data/ is not git-ignored"

    monkeypatch.setattr(dev, "DATA_DIR", tmp_path / ".redis-data")
    first = dev.start_private_redis()
    try:
        with first.client() as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            client.set("ai:seq:user", 41)
            with pytest.raises(SystemExit, match="another private redis-server"):
                dev.start_private_redis()  # never two servers on one AOF
    finally:
        first.process.kill()  # a crash: only the AOF is left (fsync once a second, written at once)
        first.process.wait(5)
        first.process = None
    second = dev.start_private_redis()
    try:
        with second.client() as client:
            assert client.get("ai:seq:user") == b"41"
    finally:
        second.stop()
    assert (tmp_path / ".redis-data" / "appendonlydir").is_dir()


def test_compose_keeps_redis_aof_on_a_named_volume() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    service = compose["services"]["redis"]
    command = service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    [volume] = service["volumes"]
    name, _, mount = volume.partition(":")
    assert mount == "/data" and name in compose["volumes"]  # the image's working directory, a named volume


def test_every_lua_script_declares_its_flags_and_keys() -> None:
    """A `#!lua` shebang: refused whole over maxmemory unless `allow-oom`; `no-writes` for reads.
    With a shebang every key must come in KEYS: no script builds a key name of its own."""
    scripts = sorted(LUA_DIR.glob("*.lua"))
    assert scripts
    for path in scripts:
        source = path.read_text()
        first = source.splitlines()[0]
        assert re.fullmatch(r"#!lua( flags=(no-writes|allow-oom))?", first), f"{path.name}: {first}"
        writes = re.search(r"redis\.call\('(SET|HSET|HINCRBY|DEL|XADD|RPUSH|ZADD|EXPIRE|PEXPIRE|APPEND)'", source)
        assert (first == "#!lua flags=no-writes") == (writes is None), path.name
        for call in re.finditer(r"redis\.call\('(\w+)', ([^,)]+)", source):
            command, key = call[1], call[2]
            if command in ("PUBLISH", "SPUBLISH"):  # a channel, not a key
                continue
            # login.lua's `drop` is a list of KEYS entries (the sessions it was told to drop).
            declared = ("KEYS[", "unpack(KEYS", "unpack(drop")
            assert key.startswith(declared), f"{path.name}: {call[0]} names a key that is not in KEYS"


def test_writing_script_is_refused_whole_on_a_full_redis() -> None:
    """What the flags buy, on a real server: a script that would delete then write is refused
    before its first command when Redis is over maxmemory; a read-only one still runs."""
    server = RedisServer(None, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction").start()
    try:
        with server.client() as client:
            client.set("victim", "kept")
            client.config_set("maxmemory", 1)  # over it now, whatever is stored
            writer = "#!lua\nredis.call('DEL', KEYS[1])\nredis.call('SET', KEYS[2], 'x')\nreturn 1"
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                client.eval(writer, 2, "victim", "other")
            assert client.get("victim") == b"kept"  # nothing half-done
            reader = "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])"
            assert client.eval(reader, 1, "victim") == b"kept"
            unflagged = "redis.call('DEL', KEYS[1])\nredis.call('SET', KEYS[2], 'x')\nreturn 1"
            # Without flags Redis checks memory at a script's first write only; a DEL passes that
            # check, and the writes after it then go on past maxmemory.
            assert client.eval(unflagged, 2, "victim", "other") == 1
            assert client.get("victim") is None and client.get("other") == b"x"
    finally:
        server.stop()
