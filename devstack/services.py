"""The API and worker processes, started as `python -m backend` / `python -m workers`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]

BASE_ENV = {
    "ENVIRONMENT": "test",
    "AUTH_PROVIDER": "dev",
    "LLM_PROVIDER": "fake",
    "FAKE_LLM_TOKEN_DELAY_MS": "2",
    "FAKE_LLM_REPLY_WORDS": "30",
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_CHAT_PER_MINUTE": "0",
    "RATE_LIMIT_INTERVIEW_PER_MINUTE": "0",
    "RATE_LIMIT_AUTH_PER_MINUTE": "0",
    "RATE_LIMIT_STREAM_PER_MINUTE": "0",
    "STREAMS_PER_USER_MAX": "1000",
}


def _env(redis_url: str, overrides: dict[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "OIDC_", "OPENAI_", "AZURE_OPENAI_", "LLM_"))
    }
    env.update(BASE_ENV)
    env["REDIS_URL"] = redis_url
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    return env


class Service:
    module = ""

    def __init__(self, redis_url: str, **overrides: str) -> None:
        self.redis_url = redis_url
        self.overrides = overrides
        self.log = tempfile.NamedTemporaryFile(prefix=f"{self.module}-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=_env(self.redis_url, self.overrides),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches Sanic's worker processes too
        )
        return self

    def signal(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process alone (a crash); what it leaves behind is reaped by stop()."""
        self.signal(signal.SIGKILL)
        if self.process:
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(10)
            code = None
        with contextlib.suppress(ProcessLookupError, PermissionError):  # children a killed parent left behind
            os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


class Api(Service):
    module = "backend"

    def __init__(self, redis_url: str, **overrides: str) -> None:
        self.port = int(overrides.pop("PORT", 0)) or free_port()
        super().__init__(redis_url, PORT=str(self.port), **overrides)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Api:
        super().start()
        try:
            wait_for_port(self.port, process=self.process)
        except Exception as error:
            raise RuntimeError(f"API did not start:\n{self.output()}") from error
        return self


class Worker(Service):
    module = "workers"
