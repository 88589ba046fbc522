"""`make run`: the whole system on one machine with no configuration.

Uses REDIS_URL when set, else the Redis on 127.0.0.1:6379 when one answers, else starts a
private redis-server on a free port that keeps its data (AOF) in .redis-data/ of the checkout
(git-ignored), so users and chats survive a restart. Then runs the API and one worker (restarted
if they crash), prints how to log in, and stops everything it started on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # devstack/, when run as a script

from devstack.redis_server import RedisServer  # noqa: E402


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


DATA_DIR = ROOT / ".redis-data"
# Every write is in the AOF within a second (appendfsync everysec), and the file is rewritten
# (compacted) as it grows; noeviction: a full Redis refuses writes rather than drop users' data.
PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")


def pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except PermissionError:
        return True  # someone else's process
    except (OSError, ValueError):
        return False
    return True


def start_private_redis() -> RedisServer:
    pid_file = DATA_DIR / "redis.pid"
    if pid_alive(pid_file):  # two servers on one AOF would corrupt it
        sys.exit(
            f"make run: another private redis-server uses {DATA_DIR} (pid in {pid_file}); stop that make run first."
        )
    try:
        return RedisServer(None, *PERSISTENCE, "--pidfile", str(pid_file), data_dir=DATA_DIR).start()
    except RuntimeError as error:
        sys.exit(
            f"make run: no Redis answers on 127.0.0.1:6379, and a private one did not start ({error}).\n"
            "Fix: install redis-server (apt-get install redis-server, or brew install redis), "
            "or set REDIS_URL=redis://host:port/0."
        )


def playground_on(env: dict[str, str]) -> bool:
    """config/settings.py's rule: PLAYGROUND when set, else on in development (the default)."""
    value = env.get("PLAYGROUND", "").strip().lower()
    if value:
        return value in ("1", "true", "t", "yes", "y", "on")
    return env.get("ENVIRONMENT", "development") == "development"


def main() -> None:
    children: dict[str, subprocess.Popen[bytes]] = {}
    private_redis = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        if answers("127.0.0.1", 6379):
            redis_url = "redis://127.0.0.1:6379/0"
        else:
            private_redis = start_private_redis()
            redis_url = private_redis.url
            print(f"started a private redis-server at {redis_url} (data kept in {DATA_DIR})")
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    env.setdefault("FAKE_LLM_TOKEN_DELAY_MS", "80")
    commands = {"api": [sys.executable, "-m", "backend"], "worker": [sys.executable, "-m", "workers"]}

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(command, cwd=ROOT, env=env)
        host = env.get("HOST", "127.0.0.1")
        port = env.get("PORT", "8000")
        base = env.get("PUBLIC_URL") or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        base = base.rstrip("/")
        if playground_on(env):
            login = f"""Web playground: {base}/
  open it in a browser: log in (pick any user name), take the interview, chat with the assistant."""
        else:
            login = f"""Log in:
  browser: curl -s {base}/user/auth-code, open its loginUrl, pick a user name;
           the page shows your token."""
        print(
            f"""
{login}
API on {base}   (Redis: {redis_url}; LLM: {env.get("LLM_PROVIDER") or "fake unless OPENAI_API_KEY is set"})
  docs:  {base}/docs
  curl:  curl -H "Authentication: Basic <token>" {base}/user/info
Ctrl-C stops everything.
""",
            flush=True,
        )
        while not stopping:
            time.sleep(0.2)
            for name, process in children.items():
                if process.poll() is not None and not stopping:
                    if process.returncode == 2:  # configuration error, already explained
                        stopping = True
                        break
                    print(f"{name} exited with {process.returncode}; restarting it", flush=True)
                    children[name] = subprocess.Popen(commands[name], cwd=ROOT, env=env)
    finally:
        for process in children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in children.values():
            try:
                process.wait(25)
            except subprocess.TimeoutExpired:
                process.kill()
        if private_redis is not None:
            private_redis.stop()


if __name__ == "__main__":
    main()
