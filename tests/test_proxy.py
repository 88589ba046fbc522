"""Client addresses through trusted proxies only: a real nginx in front of two API pods.

nginx (Debian's package, run as this test's own process) balances over two pods started with
PROXIES_COUNT=1 and appends the peer it sees to X-Forwarded-For. Two clients that differ only by
their source address (127.0.0.2 and 127.0.0.3: all of 127.0.0.0/8 is loopback on Linux) get
separate auth-code buckets, shared by both pods. A client talking to a pod directly
(PROXIES_COUNT=0) cannot leave its bucket with a forged X-Forwarded-For, X-Real-IP or Forwarded.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_port, wait_for_port
from tests.conftest import Processes, isolated_url

LIMIT = 3  # auth-code calls per client address per minute

NGINX_MAIN = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
}}
"""

NGINX_CONF = """
    access_log off;
    upstream api {{
        server 127.0.0.1:{pod1};
        server 127.0.0.1:{pod2};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
        }}
    }}
"""


def readme_nginx_example() -> str:
    """The nginx example of the README (Behind a proxy), as written there."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert match, "README: the nginx example is gone"
    return textwrap.dedent(match.group(1))


def nginx_binary() -> str | None:
    return shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")


class Nginx:
    def __init__(self, pod_ports: tuple[int, int], http: str | None = None) -> None:
        """`http`: the http {} block's content (default NGINX_CONF), where {port}, {pod1}, {pod2}
        and {dir} are filled in."""
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-"))
        self.port = free_port()
        block = (http or NGINX_CONF).format(dir=self.dir, port=self.port, pod1=pod_ports[0], pod2=pod_ports[1])
        (self.dir / "nginx.conf").write_text(NGINX_MAIN.format(dir=self.dir, http=block))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> Nginx:
        self.process = subprocess.Popen(
            [binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, process=self.process)
        except Exception as error:
            raise RuntimeError(f"nginx did not start:\n{self.errors()}") from error
        return self

    def errors(self) -> str:
        log = self.dir / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: the master stops its worker, then itself
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nginx_bin() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx; .ci/run installs it)")
    return binary


@pytest.fixture
def proxied(processes: Processes, redis_url: str, nginx_bin: str) -> Iterator[tuple[str, str]]:
    """(URL of nginx in front of two PROXIES_COUNT=1 pods, Redis URL they share)."""
    url = isolated_url(redis_url)
    env = {"PROXIES_COUNT": "1", "RATE_LIMIT_AUTH_PER_MINUTE": str(LIMIT)}
    pods = processes.api(url, **env), processes.api(url, **env)
    nginx = Nginx((pods[0].port, pods[1].port)).start(nginx_bin)
    try:
        yield f"http://127.0.0.1:{nginx.port}", url
    finally:
        nginx.stop()


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    """An HTTP client whose connections leave from `address` (a loopback address of its own)."""
    return httpx.AsyncClient(base_url=base_url, transport=httpx.AsyncHTTPTransport(local_address=address), timeout=10)


async def auth_codes(http: httpx.AsyncClient, count: int, **headers: str) -> list[httpx.Response]:
    return [await http.get("/user/auth-code", headers=headers) for _ in range(count)]


async def test_clients_behind_a_proxy_get_their_own_buckets(proxied: tuple[str, str]) -> None:
    proxy_url, _ = proxied
    async with client_from("127.0.0.2", proxy_url) as alice, client_from("127.0.0.3", proxy_url) as bob:
        allowed = await auth_codes(alice, LIMIT)
        assert [r.status_code for r in allowed] == [200] * LIMIT  # spread over both pods by nginx
        [refused] = await auth_codes(alice, 1)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["message"]
        # A forged X-Forwarded-For sent to nginx comes before the address nginx appends: no way out.
        for forged in ({"X-Forwarded-For": "10.1.2.3"}, {"X-Forwarded-For": "10.1.2.3, 10.4.5.6"}):
            [still] = await auth_codes(alice, 1, **forged)
            assert still.status_code == 429, forged
        # Bob shares nginx, and so the TCP peer the pods see, but not Alice's bucket.
        assert [r.status_code for r in await auth_codes(bob, LIMIT)] == [200] * LIMIT
        assert (await auth_codes(bob, 1))[0].status_code == 429


async def test_a_direct_client_cannot_forge_its_address(processes: Processes, redis_url: str) -> None:
    direct = processes.api(isolated_url(redis_url), RATE_LIMIT_AUTH_PER_MINUTE=str(LIMIT))  # PROXIES_COUNT=0
    async with client_from("127.0.0.4", direct.url) as mallory:
        assert [r.status_code for r in await auth_codes(mallory, LIMIT)] == [200] * LIMIT
        forged_headers = [
            {"X-Forwarded-For": "10.9.8.7"},
            {"X-Forwarded-For": "10.9.8.7, 127.0.0.5"},
            {"X-Real-IP": "10.9.8.7"},
            {"Forwarded": "for=10.9.8.7"},
            {"X-Client-IP": "10.9.8.7"},
        ]
        for headers in forged_headers:
            [response] = await auth_codes(mallory, 1, **headers)
            assert response.status_code == 429, headers
    # Another address on the same pod is its own client.
    async with client_from("127.0.0.6", direct.url) as other:
        assert (await auth_codes(other, 1))[0].status_code == 200


async def test_the_readme_nginx_example_keeps_tickets_out_of_its_access_log(
    processes: Processes, redis_url: str, nginx_bin: str
) -> None:
    """The README's example, with only its addresses and log path changed, proxies to two pods and
    logs each request's path, never its query string (a stream ticket is a credential)."""
    example = readme_nginx_example().replace("{", "{{").replace("}", "}}")
    example = example.replace("server 127.0.0.1:8001;", "server 127.0.0.1:{pod1};")
    example = example.replace("server 127.0.0.1:8002;", "server 127.0.0.1:{pod2};")
    example = example.replace("listen 80;", "listen 127.0.0.1:{port};")
    example = example.replace("/var/log/nginx/ai-backend.log", "{dir}/access.log")
    assert example.count("{pod1}") == example.count("{pod2}") == example.count("{port}") == 1
    url = isolated_url(redis_url)
    pods = processes.api(url), processes.api(url)
    nginx = Nginx((pods[0].port, pods[1].port), http=example).start(nginx_bin)
    try:
        secret = "st.1." + "S3cr3tT1cketValue" * 2
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{nginx.port}", timeout=10) as http:
            answer = await http.get("/assistant/chat/1/stream", params={"ticket": secret, "lastEventId": "0-1"})
            assert answer.status_code == 401, answer.text  # through nginx to a pod: a ticket nobody issued
            assert (await http.get("/health")).status_code == 200
        log = nginx.dir / "access.log"
        for _ in range(50):  # nginx writes the line once the request ends
            if log.exists() and "/health" in log.read_text():
                break
            await asyncio.sleep(0.1)
        lines = log.read_text()
        assert '"GET /assistant/chat/1/stream HTTP/1.1" 401' in lines, lines
        assert secret not in lines and "ticket" not in lines and "lastEventId" not in lines, lines
    finally:
        nginx.stop()
